"""The probe interface: a measurement at one point in weight space returning a typed result."""

from __future__ import annotations

import dataclasses
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsuite.functional.params import Params
from lsuite.probes.data_source import Batch, BatchAdapter, DataSource, default_batch_adapter
from lsuite.probes.point import BatchNormMode, LossFn, ModelPoint, as_params, snapshot

ProbeData = Mapping[str, DataSource]
"""Probe data by split name (``"train"``, ``"val"``); the first entry is the primary split."""


def to_jsonable(value: Any) -> Any:
    """Convert tensors, arrays and numpy scalars (nested in lists/dicts) to JSON-safe values."""
    if isinstance(value, Tensor):
        return to_jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else str(f)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """Base of every probe's result; subclasses add typed fields.

    Step, epoch, timing and run metadata are added by the callback, not here.
    """

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-safe dict (floats, lists, strings)."""
        return {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def scalars(self) -> dict[str, float]:
        """Return the flat ``field -> float`` values that go to loggers (default: float fields)."""
        out: dict[str, float] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f.name] = float(v)
        return out


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Probe(ABC):
    """A measurement of a model at one point in weight space.

    Subclasses implement `run` on a `ModelPoint` and `DataSource`s; `measure` is the entry point
    for a plain ``nn.Module`` outside Lightning. A probe never mutates the model it measures, and
    every random draw comes from the ``generator`` it is given.

    Args:
        name: name used for result files and logger keys (default: the class name in snake case).
    """

    needs_splits: ClassVar[tuple[str, ...]] = ()
    """Splits the probe needs besides the primary one (e.g. ``("val",)``)."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or _snake_case(type(self).__name__)

    @abstractmethod
    def run(
        self, point: ModelPoint, data: ProbeData, *, generator: torch.Generator, **anchors: Params
    ) -> ProbeResult:
        """Measure ``point`` on ``data``.

        Args:
            point: the frozen model.
            data: probe batches by split; the first entry is the primary split.
            generator: CPU generator for every random draw (draws are moved to the point's device).
            **anchors: other points in weight space a probe may need (e.g. ``start``).

        Returns:
            The probe's typed result.
        """

    def measure(
        self,
        model: nn.Module,
        batches: Iterable[Any],
        *,
        loss_fn: LossFn = F.cross_entropy,
        generator: torch.Generator | None = None,
        val_batches: Iterable[Any] | None = None,
        batch_adapter: BatchAdapter = default_batch_adapter,
        bn_mode: BatchNormMode = "eval",
        **anchors: nn.Module | Mapping[str, Tensor],
    ) -> ProbeResult:
        """Measure a plain ``nn.Module`` on the given batches; ``model`` is never mutated.

        Args:
            model: the network; its trainable parameters span weight space.
            batches: a DataLoader or a list of batches (``(inputs, targets)`` by default).
            loss_fn: ``loss_fn(outputs, targets)``, mean over the batch; cross-entropy by default.
            generator: CPU generator for random draws; a generator seeded with 0 when omitted.
            val_batches: batches of a second split, for probes that report train and val.
            batch_adapter: maps a batch to ``(inputs, targets)``.
            bn_mode: ``"eval"`` (running statistics, default) or ``"train"`` (batch statistics).
            **anchors: other points in weight space (modules or state dicts), e.g. ``start=...``.

        Returns:
            The probe's typed result.
        """
        point = snapshot(model, loss_fn, bn_mode=bn_mode)
        data = {"train": DataSource(_prepare(batches, batch_adapter, point.device), name="train")}
        if val_batches is not None:
            data["val"] = DataSource(_prepare(val_batches, batch_adapter, point.device), name="val")
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        points = {k: as_params(v, point.params) for k, v in anchors.items()}
        return self.run(point, data, generator=generator, **points)

    def observe(self, params: Params, *, step: int, epoch: int) -> None:
        """See the weights during training (at fit start and each epoch end); default: ignore.

        Args:
            params: detached copies of the trainable parameters.
            step: the trainer's global step.
            epoch: the current epoch.
        """
        del params, step, epoch

    def state_dict(self) -> dict[str, Any]:
        """Return the probe's own state to checkpoint (e.g. weights it observed)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state returned by `state_dict`."""
        del state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _prepare(batches: Iterable[Any], adapter: BatchAdapter, device: torch.device) -> list[Batch]:
    out: list[Batch] = []
    for batch in batches:
        inputs, targets = adapter(batch)
        out.append((_to(inputs, device), targets.to(device)))
    return out


def _to(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, Tensor):
        return inputs.to(device)
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_to(v, device) for v in inputs)
    if isinstance(inputs, dict):
        return {k: _to(v, device) for k, v in inputs.items()}
    return inputs
