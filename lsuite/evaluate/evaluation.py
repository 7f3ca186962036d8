"""Evaluate the mean loss and accuracy of every point of a family on every split.

Points are flat ``(P,)`` parameter vectors in the key order of ``point.params`` (see
`lsuite.functional.params.flatten`). A family of points is either affine,
``base + coefficients @ directions`` (`AffinePoints`: lines, planes, random samples), or a
straight segment evaluated with ``torch.lerp`` (`SegmentPoints`: exact at both ends). Nothing is
deep-copied per point and the model is never touched; every point goes through the point's
stateless skeleton, in a loop or with ``vmap`` (`lsuite.evaluate.batching` says which, and why).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import Tensor

from lsuite.evaluate.accuracy import AccuracyFn
from lsuite.evaluate.batching import Batching, choose_batching
from lsuite.evaluate.loop_evaluator import BuffersFn, evaluate_loop
from lsuite.evaluate.points import Points, flat_params
from lsuite.evaluate.reduction import SplitValues, reduce_values
from lsuite.evaluate.vmap_evaluator import evaluate_vmap
from lsuite.probes.data_source import DataSource
from lsuite.probes.point import ModelPoint
from lsuite.probes.progress import progress_total

log = logging.getLogger(__name__)

__all__ = ["BuffersFn", "evaluate_points"]


def evaluate_points(
    point: ModelPoint,
    data: Mapping[str, DataSource],
    points: Points,
    *,
    batching: Batching = "auto",
    buffers_fn: BuffersFn | None = None,
    accuracy_fn: AccuracyFn | None = None,
) -> tuple[dict[str, SplitValues], str]:
    """Return the mean loss and accuracy of every point on every split.

    Args:
        point: the frozen model (skeleton, buffers, loss function; its own weights are unused).
        data: probe batches by split.
        points: the family of points, ``N`` of them; a family with ``buffers(index)`` (and
            ``stack_buffers(slice)`` for ``vmap``; without it the loop is used) gives each point
            its own buffers, e.g. interpolated BatchNorm statistics.
        batching: ``"auto"`` (the rule in the module doc), ``"vmap"`` or ``"loop"``.
        buffers_fn: per-point buffers (forces the loop), e.g. recomputed BatchNorm statistics;
            the point's buffers when None (a copy for ``bn_mode="train"``).
        accuracy_fn: ``accuracy_fn(outputs, targets)``, a batch's mean accuracy; None for top-1
            accuracy where it is defined (`class_targets`).

    Returns:
        ``({split: SplitValues}, mode)`` with ``mode`` the batching used (``"vmap"``/``"loop"``).

    Raises:
        RuntimeError: when ``batching="vmap"`` is forced and the model cannot be vmapped (with
            ``"auto"`` such a failure is logged and the loop is used instead).
    """
    flat = flat_params(point)
    all_batches = [b for source in data.values() for b in source.batches]
    stacked_buffers = callable(getattr(points, "stack_buffers", None))  # vmap takes them too
    per_point_buffers = buffers_fn is not None or (
        callable(getattr(points, "buffers", None)) and not stacked_buffers
    )
    mode, chunk = choose_batching(
        point, all_batches, len(points), batching, per_point_buffers=per_point_buffers
    )
    buffers = point.buffers
    if point.bn_mode == "train":
        buffers = {k: v.clone() for k, v in buffers.items()}
    everything = range(len(points))
    parts: list[dict[str, Tensor]] = []
    progress_total(len(points), "grid points")

    def loop(indices: range) -> None:
        parts.append(
            evaluate_loop(point, data, points, buffers, flat, buffers_fn, accuracy_fn, indices)
        )

    def batched(indices: range) -> None:
        parts.append(evaluate_vmap(point, data, points, buffers, flat, chunk, accuracy_fn, indices))

    if mode == "loop":
        loop(everything)
    elif mode == "vmap" and batching == "vmap":
        batched(everything)
    elif mode == "vmap":
        mode = "vmap" if _vmap_or_loop(batched, loop, everything) else "loop"
    else:
        mode = _race(batched, loop, len(points), min(chunk, len(points) // 4), flat.device)
    out: dict[str, SplitValues] = {}
    for name, source in data.items():
        values = torch.cat([p[name] for p in parts], dim=1)  # (num_local_batches, N, 2)
        out[name] = reduce_values(source, values, len(points), flat.device)
    return out, mode


def _race(
    batched: Callable[[range], None],
    loop: Callable[[range], None],
    count: int,
    chunk: int,
    device: torch.device,
) -> Literal["vmap", "loop"]:
    """Evaluate one chunk each way, then the rest the faster way.

    A ``vmap`` failure (an op without a batching rule) is logged and the loop does everything.

    Returns:
        The mode used for the remaining points (the faster one per point).
    """
    first = range(min(chunk, count))
    start = _now(device)
    if not _vmap_or_loop(batched, loop, first):
        loop(range(first.stop, count))
        return "loop"
    vmap_time = (_now(device) - start) / len(first)
    second = range(first.stop, min(first.stop + chunk, count))
    if not second:
        return "vmap"
    start = _now(device)
    loop(second)
    loop_time = (_now(device) - start) / len(second)
    winner: Literal["vmap", "loop"] = "vmap" if vmap_time < loop_time else "loop"
    rest = range(second.stop, count)
    if rest:
        (batched if winner == "vmap" else loop)(rest)
    return winner


def _vmap_or_loop(
    batched: Callable[[range], None], loop: Callable[[range], None], indices: range
) -> bool:
    """Evaluate ``indices`` with ``vmap``, or with the loop if ``vmap`` fails (logged).

    Returns:
        Whether ``vmap`` succeeded.
    """
    try:
        batched(indices)
    except RuntimeError as error:  # an op without a batching rule in a user model
        log.warning("batching: vmap failed (%s); evaluating the points in a loop", error)
        loop(indices)
        return False
    return True


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
