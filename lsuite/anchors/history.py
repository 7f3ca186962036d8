"""Keep the weights seen during training that point specs name, and resolve specs to points."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor, nn

from lsuite.anchors.files import load_point
from lsuite.anchors.specs import OBSERVED_KINDS, PointSpec, parse_spec
from lsuite.errors import ConfigError
from lsuite.functional.params import Params
from lsuite.probes.point import as_params


@dataclasses.dataclass(frozen=True)
class Observation:
    """Weights seen during training (on the CPU).

    Attributes:
        step: the trainer's global step.
        epoch: the epoch (for step 0: the epoch training starts in).
        params: detached CPU copies of the trainable parameters.
        buffers: detached CPU copies of the buffers (empty when none were given).
    """

    step: int
    epoch: int
    params: Params
    buffers: Params = dataclasses.field(default_factory=dict)


class WeightHistory:
    """Weights observed during training that some point specs need (kept by the caller).

    Observations happen at fit start (step 0) and at every epoch end. Only the observations a
    spec can name are kept: ``init`` keeps step 0, ``epoch:N`` / ``step:N`` their match, and
    ``middle`` or ``trajectory`` keep every one.

    Args:
        specs: the specs (texts or `PointSpec`) that will be resolved; decide what is kept.
        keep_all: keep every observation.
    """

    def __init__(self, specs: Iterable[str | PointSpec] = (), keep_all: bool = False) -> None:
        self.specs = tuple(parse_spec(s, "spec", check_files=False) for s in specs)
        self.keep_all = keep_all or any(s.kind in ("middle", "trajectory") for s in self.specs)
        self.observations: list[Observation] = []

    @property
    def needed(self) -> bool:
        """Whether any observation is kept at all."""
        return self.keep_all or any(s.kind in OBSERVED_KINDS for s in self.specs)

    def observe(
        self,
        params: Mapping[str, Tensor],
        buffers: Mapping[str, Tensor] | None = None,
        *,
        step: int,
        epoch: int,
    ) -> None:
        """Keep CPU copies of ``params`` (and ``buffers``) when a spec may name them.

        Args:
            params: the trainable parameters.
            buffers: the buffers (BatchNorm statistics), kept with them.
            step: the trainer's global step.
            epoch: the current epoch.
        """
        if not (self.keep_all or any(_matches(s, step, epoch) for s in self.specs)):
            return
        kept = {k: v.detach().to("cpu", copy=True) for k, v in params.items()}
        kept_buffers = {k: v.detach().to("cpu", copy=True) for k, v in (buffers or {}).items()}
        self.observations = [o for o in self.observations if o.step != step or step == 0]
        self.observations.append(Observation(step, epoch, kept, kept_buffers))

    def resolve(self, spec: str | PointSpec, like: Params, key: str = "spec") -> Params:
        """Return the parameters named by ``spec``, on the device and dtype of ``like``.

        Args:
            spec: a point spec (``current`` returns ``like`` itself).
            like: the parameters of the point being measured.
            key: the argument the spec came from, for error messages.

        Returns:
            Parameters with the keys and shapes of ``like``.

        Raises:
            ConfigError: when the weights were not observed (yet) or a file does not fit.
        """
        return self.resolve_point(spec, like, None, key)[0]

    def resolve_point(
        self,
        spec: str | PointSpec,
        like_params: Params,
        like_buffers: Params | None = None,
        key: str = "spec",
    ) -> tuple[Params, Params]:
        """Return ``(params, buffers)`` named by ``spec`` (buffers: empty unless asked for).

        Args:
            spec: a point spec.
            like_params: the parameters of the point being measured.
            like_buffers: its buffers; the point's buffers are resolved too when given.
            key: the argument the spec came from, for error messages.

        Returns:
            Parameters (and buffers) with the keys and shapes of the references.

        Raises:
            ConfigError: when the weights were not observed (yet) or a file does not fit.
        """
        parsed = parse_spec(spec, key, check_files=False)
        if parsed.kind == "current":
            return like_params, dict(like_buffers or {})
        if parsed.kind in ("file", "run"):
            return load_point(parsed, like_params, like_buffers, key)
        if parsed.kind == "trajectory":
            raise ConfigError(f"{key}: 'trajectory' names many points; use `observations`")
        found = self._find(parsed)
        if found is None:
            seen = [(o.step, o.epoch) for o in self.observations]
            raise ConfigError(
                f"{key}: {parsed.text!r} has not been observed (kept (step, epoch): {seen}); "
                f"measure after that point (e.g. on_fit_end), or pass {key}=weights to measure()"
            )
        params = as_params(found.params, like_params)
        buffers = as_params(found.buffers, like_buffers) if like_buffers and found.buffers else {}
        return params, buffers

    def state_dict(self) -> dict[str, Any]:
        """Return the kept observations (CPU tensors) for a checkpoint."""
        return {
            "observations": [
                {"step": o.step, "epoch": o.epoch, "params": dict(o.params), "buffers": o.buffers}
                for o in self.observations
            ]
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore observations saved by `state_dict`."""
        self.observations = [
            Observation(
                int(o["step"]), int(o["epoch"]), dict(o["params"]), dict(o.get("buffers", {}))
            )
            for o in state.get("observations", [])
        ]

    def _find(self, spec: PointSpec) -> Observation | None:
        if spec.kind == "middle":
            return self.observations[len(self.observations) // 2] if self.observations else None
        matches = [o for o in self.observations if _matches(spec, o.step, o.epoch)]
        return matches[-1] if matches else None


def _matches(spec: PointSpec, step: int, epoch: int) -> bool:
    if spec.kind == "init":
        return step == 0
    if spec.kind == "step":
        return step == spec.number
    if spec.kind == "epoch":
        return epoch == spec.number and step > 0
    return False


def resolve_points(
    specs: Mapping[str, str | PointSpec | list[str | PointSpec]],
    params: Params,
    buffers: Params | None = None,
    history: WeightHistory | None = None,
) -> dict[str, Any]:
    """Resolve a probe's `point_specs` into the keyword arguments of its ``run``.

    Args:
        specs: ``name -> spec`` or ``name -> [spec, ...]`` (from ``Probe.point_specs()``).
        params: the trainable parameters of the point being measured (the reference).
        buffers: its buffers; when given (for probes with ``point_buffers``), every resolved
            point is a state holding the point's buffers too (BatchNorm statistics: a file's or
            run's own, an observation's when it kept them, the reference's for ``current``).
        history: observed weights; needed for ``init``, ``epoch:N``, ``step:N``, ``middle``
            and ``trajectory``.

    Returns:
        ``name -> Params``, ``name -> [Params, ...]`` for lists, and ``name -> [Observation,
        ...]`` for ``trajectory``; with ``buffers``, each ``Params`` is ``{**buffers,
        **params}`` of that point.

    Raises:
        ConfigError: when a spec needs observed weights and there is no history, or cannot be
            resolved.
    """
    out: dict[str, Any] = {}
    for name, value in specs.items():
        many = isinstance(value, (list, tuple))
        resolved = []
        for spec in value if many else [value]:  # type: ignore[union-attr]
            parsed = parse_spec(spec, name, check_files=False)
            if parsed.kind in OBSERVED_KINDS and history is None:
                raise ConfigError(
                    f"{name}: {parsed.text!r} names weights seen during training; pass "
                    f"{name}= (a module or state dict) to measure(), or measure in ProbeCallback"
                )
            if parsed.kind == "trajectory":
                resolved.append(list(history.observations))  # type: ignore[union-attr]
            elif buffers is None:
                resolved.append((history or WeightHistory()).resolve(parsed, params, name))
            else:
                known = history or WeightHistory()
                resolved.append(_resolve_state(known, parsed, params, buffers, name))
        out[name] = resolved if many else resolved[0]
    return out


def _resolve_state(
    history: WeightHistory, spec: PointSpec, params: Params, buffers: Params, key: str
) -> Params:
    """Return ``{**buffers, **params}`` of ``spec``; a file without buffers gives its params."""
    try:
        found_params, found_buffers = history.resolve_point(spec, params, buffers, key)
    except ConfigError:
        if not buffers or spec.kind not in ("file", "run"):
            raise
        found_params, found_buffers = history.resolve_point(spec, params, None, key)[0], {}
    return {**found_buffers, **found_params}


def as_state(weights: Any, like_params: Params, like_buffers: Params) -> Params:
    """Return a module's or state dict's parameters and the buffers it holds, as one state.

    Args:
        weights: a module or a (state) dict holding at least the keys of ``like_params``.
        like_params: the reference parameters (keys, shapes, device, dtype).
        like_buffers: the reference buffers; those ``weights`` holds (same shape) are kept.

    Returns:
        ``{**buffers, **params}``: detached copies on the references' device (floating
        tensors in their dtype).

    Raises:
        ConfigError: when a parameter is missing or a shape differs.
    """
    state = dict(weights.state_dict()) if isinstance(weights, nn.Module) else dict(weights)
    out: Params = {}
    for key, ref in like_buffers.items():
        value = state.get(key)
        if isinstance(value, Tensor) and tuple(value.shape) == tuple(ref.shape):
            dtype = ref.dtype if ref.is_floating_point() else value.dtype
            out[key] = value.detach().to(device=ref.device, dtype=dtype).clone()
    return {**out, **as_params(state, like_params)}
