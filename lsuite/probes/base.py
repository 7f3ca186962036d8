"""The probe interface: a measurement at one point in weight space returning a typed result."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsuite.anchors.history import Observation, as_state, resolve_points
from lsuite.errors import ConfigError
from lsuite.functional.params import Params
from lsuite.probes.data_source import Batch, BatchAdapter, DataSource, default_batch_adapter
from lsuite.probes.point import (
    BatchNormMode,
    ForwardFn,
    LossFn,
    ModelPoint,
    as_params,
    snapshot,
)
from lsuite.probes.result_registry import decode, register

_R = TypeVar("_R", bound="ProbeResult")

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
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict):
            return to_dict()
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """Base of every probe's result; subclasses add typed fields.

    Step, epoch, timing and run metadata are added by the callback, not here. Every subclass
    is registered by its class name (a record's ``meta["kind"]``), so `result_class` finds it
    and `from_dict` rebuilds it from a record.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Register the subclass by its name (see `lsuite.probes.result_registry`)."""
        super().__init_subclass__(**kwargs)
        register(cls)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-safe dict (floats, lists, strings).

        Fields with ``metadata={"json": False}`` (e.g. eigenvectors) are left out.
        """
        return {
            f.name: to_jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.metadata.get("json", True)
        }

    @classmethod
    def from_dict(cls: type[_R], data: Mapping[str, Any]) -> _R:
        """Rebuild a result from its `to_dict` output: ``type(r).from_dict(r.to_dict()) == r``.

        Values are converted by the field types: non-finite floats written as strings come
        back as floats, tensors and arrays from nested lists, nested dataclasses rebuilt.

        Args:
            data: the fields as JSON values (a record's ``result``).

        Returns:
            The result.

        Raises:
            ConfigError: when a field without a default is missing.
        """
        return decode(cls, data)

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
    every random draw comes from the ``generator`` it is given. A probe that needs other points
    (a start, a set of points) declares them in `point_specs` and takes them as keyword-only
    arguments of `run`; whoever calls it resolves the specs (`lsuite.anchors`). A keyword the
    probe does not declare is a `ConfigError`.

    Args:
        name: name used for result files and logger keys (default: the class name in snake case).
    """

    needs_splits: ClassVar[tuple[str, ...]] = ()
    """Splits the probe needs besides the primary one (e.g. ``("val",)``)."""

    point_buffers: ClassVar[bool] = False
    """Whether the points of `point_specs` reach `run` with their buffers (BatchNorm statistics)
    as well as their parameters, as one state dict (see `lsuite.anchors.resolve_points`)."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or _snake_case(type(self).__name__)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap the subclass's `run` so that undeclared point keywords are a `ConfigError`."""
        super().__init_subclass__(**kwargs)
        if "run" in cls.__dict__ and not getattr(cls.__dict__["run"], "__isabstractmethod__", 0):
            cls.run = _checked_run(cls.__dict__["run"])  # type: ignore[method-assign]

    def point_specs(self) -> dict[str, str | list[str]]:
        """Return the other points the probe needs: ``run`` keyword -> spec or list of specs.

        Specs are those of `lsuite.anchors.parse_spec` (``"init"``, ``"epoch:N"``, a file, a
        run directory, ...). Default: none.
        """
        return {}

    @abstractmethod
    def run(
        self, point: ModelPoint, data: ProbeData, *, generator: torch.Generator, **points: Any
    ) -> ProbeResult:
        """Measure ``point`` on ``data``.

        Args:
            point: the frozen model.
            data: probe batches by split; the first entry is the primary split.
            generator: CPU generator for every random draw (draws are moved to the point's device).
            **points: the points named in `point_specs`, resolved (parameters, same keys as
                ``point.params``; a list of them for a list of specs).

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
        forward_fn: ForwardFn | str | None = None,
        dtype: torch.dtype | str | None = None,
        **points: Any,
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
            forward_fn: how to call the model (a callable ``(module, inputs) -> outputs``, a
                dotted path, or a submodule name such as ``"model"``); None: ``model(inputs)``.
            dtype: compute in ``float32`` / ``float64`` (see `snapshot`); None: the model's.
            **points: the points of `point_specs` (modules or state dicts, a list for a list),
                e.g. ``start=other_model``; a declared point not given is resolved from its
                spec when that needs no training history (``current``, a file, a run dir).

        Returns:
            The probe's typed result (a point given here is labelled ``"anchor"`` in it).

        Raises:
            ConfigError: for a point the probe does not declare, or one that cannot be resolved.
        """
        point = snapshot(model, loss_fn, bn_mode=bn_mode, forward_fn=forward_fn, dtype=dtype)
        data = {"train": DataSource(_prepare(batches, batch_adapter, point.device), name="train")}
        if val_batches is not None:
            data["val"] = DataSource(_prepare(val_batches, batch_adapter, point.device), name="val")
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        specs = self.point_specs()
        _check_points(self, points)
        buffers = point.buffers if self.point_buffers else None
        resolved = {k: _as_point(v, point.params, buffers) for k, v in points.items()}
        resolved.update(
            resolve_points(
                {k: v for k, v in specs.items() if k not in points}, point.params, buffers
            )
        )
        with point.context():  # all of the probe's arithmetic, not only its forwards
            result = self.run(point, data, generator=generator, **resolved)
        labels = {
            f.name: "anchor"
            for f in dataclasses.fields(result)
            if f.name in points and isinstance(getattr(result, f.name), str)
        }
        return dataclasses.replace(result, **labels) if labels else result

    def observe(self, params: Params, *, step: int, epoch: int) -> None:
        """Ignore the weights seen during training (kept by the caller, see `lsuite.anchors`).

        Args:
            params: detached copies of the trainable parameters.
            step: the trainer's global step.
            epoch: the current epoch.
        """
        del params, step, epoch

    def state_dict(self) -> dict[str, Any]:
        """Return the probe's own state to checkpoint (none: probes are stateless)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state returned by `state_dict`."""
        del state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _as_point(value: Any, like: Params, buffers: Params | None = None) -> Any:
    """Return a module or state dict as parameters (lists item by item; observations as is).

    With ``buffers`` (a probe with ``point_buffers``), the buffers ``value`` holds come too.
    """
    if isinstance(value, (list, tuple)):
        return [_as_point(v, like, buffers) for v in value]
    if isinstance(value, Observation):
        return value
    return as_params(value, like) if buffers is None else as_state(value, like, buffers)


def _check_points(probe: Probe, points: Mapping[str, Any]) -> None:
    allowed = sorted(probe.point_specs())
    unknown = sorted(set(points) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{probe.name}: got points {unknown}; expected "
            + (f"some of {allowed}" if allowed else "none (the probe takes no other points)")
        )


def _checked_run(run: Callable[..., ProbeResult]) -> Callable[..., ProbeResult]:
    @functools.wraps(run)
    def checked(
        self: Probe,
        point: ModelPoint,
        data: ProbeData,
        *,
        generator: torch.Generator,
        **points: Any,
    ) -> ProbeResult:
        _check_points(self, points)
        return run(self, point, data, generator=generator, **points)

    return checked


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
