"""Evaluate chunks of points at once with ``torch.func.vmap`` over their stacked parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.func import vmap

from lsuite.evaluate.accuracy import AccuracyFn, correct_count
from lsuite.evaluate.points import Points
from lsuite.functional.params import Params, unflatten
from lsuite.probes.data_source import DataSource
from lsuite.probes.point import ModelPoint
from lsuite.probes.progress import progress_advance


def evaluate_vmap(
    point: ModelPoint,
    data: Mapping[str, DataSource],
    points: Points,
    buffers: Params,
    flat: Tensor,
    chunk: int,
    accuracy_fn: AccuracyFn | None,
    indices: range,
) -> dict[str, Tensor]:
    """Return per split the ``(num_local_batches, n, 2)`` loss and correct count of ``indices``.

    A family with a ``stack_buffers(slice)`` method gives each point its own buffers (stacked
    ``(K, *shape)``, vmapped with the parameters; eval-mode BatchNorm statistics).
    """
    parts: dict[str, list[Tensor]] = {name: [] for name in data}
    stack_buffers = getattr(points, "stack_buffers", None)
    batched = vmap(
        lambda p, x, y: _loss_and_accuracy(point, {**buffers, **p}, x, y, accuracy_fn),
        in_dims=(0, None, None),
    )
    with torch.no_grad():
        for start in range(indices.start, indices.stop, chunk):
            part = slice(start, min(start + chunk, indices.stop))
            progress_advance(part.stop - part.start)
            params = unflatten(points.stack(part), point.params)  # (K, *shape) each
            if callable(stack_buffers):
                params = {**stack_buffers(part), **params}
            for name, source in data.items():
                values = [batched(params, x, y) for x, y in source.batches]
                size = part.stop - part.start
                empty = torch.empty(0, size, 2, dtype=flat.dtype, device=flat.device)
                parts[name].append(torch.stack(values) if values else empty)
    return {name: torch.cat(chunks, dim=1) for name, chunks in parts.items()}


def _loss_and_accuracy(
    point: ModelPoint,
    state: Params,
    inputs: Any,
    targets: Tensor,
    accuracy_fn: AccuracyFn | None,
) -> Tensor:
    """Return ``[loss, correct count]`` of one batch at ``state`` (count nan if undefined)."""
    outputs = point.outputs(inputs, state, {})
    loss = point.criterion(outputs, targets)
    return torch.stack(
        [loss, correct_count(outputs, point.cast(targets), accuracy_fn).to(loss.dtype)]
    )
