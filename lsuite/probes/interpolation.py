"""Loss and accuracy along the straight line between two weight vectors, with its barrier."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import torch

from lsuite.align.repair import REPAIRS
from lsuite.anchors.specs import parse_spec
from lsuite.errors import ConfigError, require
from lsuite.evaluate import (
    BATCHINGS,
    AccuracyFn,
    Batching,
    BuffersFn,
    SegmentPoints,
    SplitValues,
    evaluate_points,
    resolve_accuracy_fn,
)
from lsuite.functional.params import Params, flatten
from lsuite.probes.aligned_curves import (
    ALIGNS,
    StackedPoints,
    aligned_start,
    curve_kind,
    network_spec,
    point_network,
    repaired_rows,
)
from lsuite.probes.base import Probe, ProbeData, ProbeResult
from lsuite.probes.batch_norm_stats import BatchNormRecompute, batch_norm_statistics
from lsuite.probes.point import ModelPoint, as_params
from lsuite.probes.segment_buffers import (
    BN_INTERPOLATED,
    BufferedPoints,
    covers_running_statistics,
    start_buffers,
)

log = logging.getLogger(__name__)
_warned: set[str] = set()


@dataclasses.dataclass(frozen=True)
class InterpolationResult(ProbeResult):
    """Loss and accuracy at ``w(alpha) = (1 - alpha) w_start + alpha w_end`` on each split.

    ``alpha`` runs from 0 (start) to 1 (end, the measured weights); values outside ``[0, 1]``
    extrapolate. The barrier of a curve ``f`` is ``max_alpha [f(alpha) - ((1 - alpha) f(0) +
    alpha f(1))]`` over the grid points in ``[0, 1]`` (Frankle, Dziugaite, Roy, Carbin 2020,
    "Linear Mode Connectivity and the Lottery Ticket Hypothesis"); it is 0 when the curve never
    rises above the chord.

    Attributes:
        alpha: ``(N,)`` positions.
        loss: split -> ``(N,)`` mean loss.
        accuracy: split -> ``(N,)`` accuracy: top-1 where the targets are class indices (see
            `lsuite.evaluate.class_targets`, ``(B*T, V)`` outputs with ``(B, T)``
            targets included), or the probe's ``accuracy_fn``; None otherwise.
        loss_barrier: split -> loss barrier (>= 0).
        loss_barrier_alpha: split -> ``alpha`` where the loss barrier is attained.
        error_barrier: split -> barrier of the error ``1 - accuracy`` (None without accuracy).
        error_barrier_alpha: split -> its location (None without accuracy).
        monotonic: split -> whether the loss never rises along ``alpha`` in ``[0, 1]`` (Lucas,
            Bae, Zhang, Fort, Zemel, Grosse 2021, "Analyzing Monotonic Linear Interpolation in
            Neural Network Loss Landscapes").
        max_rise: split -> the largest ``loss(a') - loss(a)`` over ``0 <= a < a' <= 1`` (0 when
            monotonic).
        start: what ``alpha = 0`` is (``"init"``, ``"epoch:N"``, a path, or ``"anchor"`` when
            given as a keyword).
        start_distance: ``||w_end - w_start||`` (Euclidean, over all trainable parameters).
        bn_statistics: BatchNorm statistics of the naive curve: ``"none"`` (no BatchNorm),
            ``"batch"`` (``bn_mode="train"``), ``"recomputed"`` (on ``bn_recompute_batches``
            training batches per rank), ``"interpolated"`` (the start's and the end's own
            running statistics interpolated with ``alpha``, clamped to ``[0, 1]``;
            ``num_batches_tracked`` from the nearer end), or ``"point"`` (the end point's
            running statistics everywhere: the start came without its buffers).
        batching: how points were evaluated, ``"vmap"`` or ``"loop"``.
        num_samples: split -> probe samples (all ranks).
        curves: curve kinds measured besides the naive one (``"weight"``, ``"weight_repair"``,
            ``"activation"``, ``"repair"``, ``"bn_reset"``, ...; see `align` / `repair`), in order.
        aligned_loss: kind -> split -> ``(N,)`` mean loss on the same ``alpha`` grid.
        aligned_accuracy: kind -> split -> ``(N,)`` accuracy (empty without accuracy).
        aligned_loss_barrier: kind -> split -> loss barrier of that curve.
        aligned_error_barrier: kind -> split -> error barrier (empty without accuracy).
        aligned_distance: kind -> ``||w_end - w_start||`` after aligning the start.
        align_output_diff: align method -> root-mean-square output change of the start point
            under its permutation over the probe batches (0 up to rounding: same function).
        aligned_bn_statistics: kind -> BatchNorm statistics of that curve (as ``bn_statistics``;
            ``"interpolated"`` uses the start's statistics permuted with its weights,
            ``bn_reset`` curves are ``"recomputed"``).
    """

    alpha: list[float]
    loss: dict[str, list[float]]
    accuracy: dict[str, list[float]] | None
    loss_barrier: dict[str, float]
    loss_barrier_alpha: dict[str, float]
    error_barrier: dict[str, float] | None
    error_barrier_alpha: dict[str, float] | None
    monotonic: dict[str, bool]
    max_rise: dict[str, float]
    start: str
    start_distance: float
    bn_statistics: str
    batching: str
    num_samples: dict[str, int]
    curves: list[str] = dataclasses.field(default_factory=list)
    aligned_loss: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    aligned_accuracy: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    aligned_loss_barrier: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    aligned_error_barrier: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    aligned_distance: dict[str, float] = dataclasses.field(default_factory=dict)
    align_output_diff: dict[str, float] = dataclasses.field(default_factory=dict)
    aligned_bn_statistics: dict[str, str] = dataclasses.field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """Return ``<split>_loss_barrier``, ``<split>_error_barrier``, ``<split>_max_rise``, ..."""
        out: dict[str, float] = {"start_distance": self.start_distance}
        for split in self.loss:
            out[f"{split}_loss_barrier"] = self.loss_barrier[split]
            out[f"{split}_loss_barrier_alpha"] = self.loss_barrier_alpha[split]
            out[f"{split}_max_rise"] = self.max_rise[split]
            out[f"{split}_monotonic"] = float(self.monotonic[split])
            if self.error_barrier is not None and self.error_barrier_alpha is not None:
                out[f"{split}_error_barrier"] = self.error_barrier[split]
                out[f"{split}_error_barrier_alpha"] = self.error_barrier_alpha[split]
        for kind in self.curves:
            for split, value in self.aligned_loss_barrier.get(kind, {}).items():
                out[f"{split}_loss_barrier_{kind}"] = value
            for split, value in self.aligned_error_barrier.get(kind, {}).items():
                out[f"{split}_error_barrier_{kind}"] = value
        return out


class Interpolation(Probe):
    """Evaluate the loss and accuracy along the line from a start point to the measured weights.

    Standalone: ``Interpolation(num_points=25).measure(model, batches, start=weights)``, with
    ``start`` (a module or state dict) at ``alpha = 0`` and ``model`` at ``alpha = 1``. In
    training (`ProbeCallback`), ``start`` names the weights: ``"init"`` (monotonic linear
    interpolation from initialisation), ``"epoch:N"``, ``"step:N"``, or a checkpoint / state-dict
    path (e.g. another run's ``last.ckpt``) or a run directory; see `lsuite.anchors`. The spec is
    resolved by the caller (`point_specs`) and passed to `run` as ``start``. Every point is
    evaluated on every split given (train and val when both are). Under DDP each rank evaluates
    every point on its share of the batches (see `lsuite.evaluate`).

    Args:
        num_points: grid points ``N >= 2``, evenly spaced over ``alpha_range``.
        alpha_range: ``(first, last)``; the grid must contain 0 and 1, e.g. ``(0, 1)`` or
            ``(-0.5, 1.5)`` with ``num_points`` 21 or 25.
        start: the spec of the weights at ``alpha = 0`` (checked now: a missing file fails here).
        bn_recompute_batches: when > 0, recompute BatchNorm running statistics at every
            ``alpha`` on that many training probe batches per rank (as in mode-connectivity
            work); when 0, the start's and the end's own running statistics are interpolated
            with ``alpha`` (the start's permuted with its weights on aligned curves), so
            ``alpha = 0`` is the start network exactly and ``alpha = 1`` the end network; a
            start given without buffers (a state dict of parameters only) uses the end
            point's statistics everywhere (``bn_statistics="point"``).
        batching: ``"auto"``, ``"vmap"`` or ``"loop"`` (see `lsuite.evaluate`).
        accuracy_fn: ``accuracy_fn(outputs, targets)``, a batch's mean accuracy (a callable or
            a dotted path), for outputs whose top-1 accuracy is undefined; None: top-1.
        align: ``"none"``, ``"weight"`` (weight matching) or ``"activation"`` (activation
            matching on the probe batches), or a list of them: the start point is permuted to
            match the measured point (which stays fixed) with `lsuite.align` (Git Re-Basin).
        repair: ``"none"``, ``"bn_reset"`` (BatchNorm statistics recomputed at every alpha on
            the probe batches) or ``"repair"`` (REPAIR's renormalisation of every hidden
            channel), or a list. One curve is measured per (align, repair) pair besides the
            naive one, on the same grid (e.g. ``align=["weight"], repair=["none", "repair"]``:
            naive, ``weight``, ``weight_repair``).
        align_seed: seed of weight matching's visiting order (the same on every rank).
        name: probe name (default ``"interpolation"``).

    Raises:
        ConfigError: for an argument out of range.
    """

    point_buffers = True
    """The start reaches `run` with its buffers: its own BatchNorm statistics."""

    def __init__(
        self,
        num_points: int = 25,
        alpha_range: Sequence[float] = (0.0, 1.0),
        start: str = "init",
        bn_recompute_batches: int = 0,
        batching: Batching = "auto",
        accuracy_fn: AccuracyFn | str | None = None,
        align: str | Sequence[str] = "none",
        repair: str | Sequence[str] = "none",
        align_seed: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.align = _choices(align, "align", ALIGNS)
        self.repair = _choices(repair, "repair", REPAIRS)
        self.align_seed = int(align_seed)
        self.kinds = [(a, r) for a in self.align for r in self.repair if (a, r) != ("none", "none")]
        require(
            isinstance(num_points, int) and not isinstance(num_points, bool) and num_points >= 2,
            "num_points",
            num_points,
            "an int >= 2",
        )
        self.alphas = _grid(alpha_range, num_points)
        self.num_points = num_points
        self.alpha_range = (float(alpha_range[0]), float(alpha_range[1]))
        self.start = parse_spec(start, "start").text
        require(
            isinstance(bn_recompute_batches, int) and bn_recompute_batches >= 0,
            "bn_recompute_batches",
            bn_recompute_batches,
            "an int >= 0",
        )
        self.bn_recompute_batches = bn_recompute_batches
        require(batching in BATCHINGS, "batching", batching, f"one of {list(BATCHINGS)}")
        self.batching: Batching = batching
        self.accuracy_fn = resolve_accuracy_fn(accuracy_fn)

    def point_specs(self) -> dict[str, str | list[str]]:
        """Return ``{"start": start}``: the weights at ``alpha = 0``."""
        return {"start": self.start}

    def run(
        self,
        point: ModelPoint,
        data: ProbeData,
        *,
        generator: torch.Generator,
        start: Params | None = None,
    ) -> InterpolationResult:
        """Evaluate the line from the start weights (``alpha = 0``) to ``point`` (``alpha = 1``).

        Args:
            point: the end point.
            data: probe batches by split; every split is evaluated.
            generator: unused (the probe draws nothing).
            start: the weights at ``alpha = 0`` (same keys as ``point.params``), resolved
                from the ``start`` spec, and the start's buffers when it has them (keys of
                ``point.buffers``: its BatchNorm statistics).

        Returns:
            The curves, barriers and monotonicity.

        Raises:
            ConfigError: without ``start``, or ``bn_recompute_batches`` without training data
                or BatchNorm.
        """
        del generator
        if start is None:
            raise ConfigError(
                f"start: not given; {self.name} needs the weights of its start spec "
                f"{self.start!r} passed as start= (see point_specs)"
            )
        own_buffers = start_buffers(start, point)
        start = as_params(start, point.params)
        label = self.start
        buffers_fn = None
        if self.bn_recompute_batches > 0:
            if "train" not in data or point.bn_mode == "train":
                raise ConfigError(
                    "bn_recompute_batches: got "
                    f"{self.bn_recompute_batches}; expected 0 unless the probe gets 'train' data "
                    "and runs with bn_mode 'eval'"
                )
            buffers_fn = BatchNormRecompute(point, data["train"], self.bn_recompute_batches)

        end_flat = flatten(point.params)
        start_flat = flatten(start)
        statistics = batch_norm_statistics(point, recomputed=buffers_fn is not None)
        if statistics == "point" and covers_running_statistics(own_buffers, point):
            statistics = BN_INTERPOLATED
        else:
            own_buffers = {}
        points = self._segment(SegmentPoints(start_flat, end_flat, self.alphas), own_buffers, point)
        values, mode = evaluate_points(
            point,
            data,
            points,
            batching=self.batching,
            buffers_fn=buffers_fn,
            accuracy_fn=self.accuracy_fn,
        )
        if statistics == "point" and parse_spec(self.start, "start", check_files=False).kind in (
            "file",
            "run",
        ):
            _warn_once(
                f"{self.name}: start={self.start!r} came without BatchNorm running statistics, "
                "so every point of the line uses the measured weights' (which can inflate the "
                "barrier); save the start with its buffers or set bn_recompute_batches > 0"
            )
        result = _result(
            self.alphas,
            values,
            {k: s.num_samples for k, s in data.items()},
            start=label,
            start_distance=float(torch.linalg.vector_norm((end_flat - start_flat).double())),
            bn_statistics=statistics,
            batching=mode,
        )
        if not self.kinds:
            return result
        return self._aligned(result, point, data, start, own_buffers, end_flat, buffers_fn)

    def _segment(self, points: Any, own_buffers: Params, point: ModelPoint) -> Any:
        """Return ``points`` with buffers interpolated along the grid (when the start has them)."""
        if not own_buffers:
            return points
        return BufferedPoints(points, self.alphas, own_buffers, point.buffers)

    def _aligned(
        self,
        result: InterpolationResult,
        point: ModelPoint,
        data: ProbeData,
        start: Params,
        own_buffers: Params,
        end_flat: torch.Tensor,
        buffers_fn: BuffersFn | None,
    ) -> InterpolationResult:
        """Add one curve per (align, repair) kind to ``result`` (see the class doc)."""
        source = data["train"] if "train" in data else next(iter(data.values()))
        network = point_network(point, source)
        spec = network_spec(network)
        starts: dict[str, Params] = {"none": start}
        buffers: dict[str, Params] = {"none": own_buffers}
        diffs: dict[str, float] = {}
        for method in self.align:
            if method != "none":
                starts[method], buffers[method], diffs[method] = aligned_start(
                    network, point, start, method, self.align_seed, spec, own_buffers or None
                )
        extra: dict[str, dict[str, Any]] = {
            "loss": {},
            "accuracy": {},
            "loss_barrier": {},
            "error_barrier": {},
            "distance": {},
            "bn_statistics": {},
        }
        for method, repair in self.kinds:
            kind = curve_kind(method, repair)
            first = flatten(starts[method])
            fn = buffers_fn
            if repair == "repair":
                own = buffers[method] or None
                rows = repaired_rows(
                    network, point, starts[method], self.alphas, spec, flatten, own
                )
                points: Any = StackedPoints(rows.to(end_flat.dtype))
            else:
                points = SegmentPoints(first, end_flat, self.alphas)
            extra["bn_statistics"][kind] = result.bn_statistics
            if repair == "bn_reset":
                count = self.bn_recompute_batches or len(source)
                fn = BatchNormRecompute(point, source, count)
                extra["bn_statistics"][kind] = "recomputed"
            elif fn is None:
                points = self._segment(points, buffers[method], point)
            values, _ = evaluate_points(
                point,
                data,
                points,
                batching=self.batching,
                buffers_fn=fn,
                accuracy_fn=self.accuracy_fn,
            )
            curve = _result(self.alphas, values, result.num_samples, **_meta_of(result))
            extra["loss"][kind] = curve.loss
            extra["loss_barrier"][kind] = curve.loss_barrier
            if curve.accuracy is not None and curve.error_barrier is not None:
                extra["accuracy"][kind] = curve.accuracy
                extra["error_barrier"][kind] = curve.error_barrier
            extra["distance"][kind] = float(torch.linalg.vector_norm((end_flat - first).double()))
        return dataclasses.replace(
            result,
            curves=[curve_kind(a, r) for a, r in self.kinds],
            aligned_loss=extra["loss"],
            aligned_accuracy=extra["accuracy"],
            aligned_loss_barrier=extra["loss_barrier"],
            aligned_error_barrier=extra["error_barrier"],
            aligned_distance=extra["distance"],
            align_output_diff=diffs,
            aligned_bn_statistics=extra["bn_statistics"],
        )

    def __repr__(self) -> str:
        return (
            f"Interpolation(num_points={self.num_points}, alpha_range={self.alpha_range}, "
            f"start={self.start!r}, align={self.align}, repair={self.repair}, name={self.name!r})"
        )


def _meta_of(result: InterpolationResult) -> dict[str, Any]:
    return {
        "start": result.start,
        "start_distance": result.start_distance,
        "bn_statistics": result.bn_statistics,
        "batching": result.batching,
    }


def _choices(value: str | Sequence[str], key: str, allowed: Sequence[str]) -> list[str]:
    """Return ``value`` as a list of distinct allowed names (a name or a list of names)."""
    items = [value] if isinstance(value, str) else list(value) if value is not None else []
    ok = bool(items) and all(isinstance(v, str) and v in allowed for v in items)
    require(ok, key, value, f"one of {list(allowed)} or a non-empty list of them")
    return list(dict.fromkeys(items))


def barrier(alpha: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """Return the largest rise of ``values`` above the chord from ``alpha = 0`` to ``alpha = 1``.

    Args:
        alpha: grid positions containing 0 and 1.
        values: curve values at ``alpha``.

    Returns:
        ``(barrier, alpha_at_barrier)``; the barrier is at least 0 (attained at an end).
    """
    at = {a: v for a, v in zip(alpha, values, strict=True)}
    first, last = at[0.0], at[1.0]
    best, where = 0.0, 0.0
    for a, v in zip(alpha, values, strict=True):
        if 0.0 <= a <= 1.0:
            gap = v - ((1.0 - a) * first + a * last)
            if gap > best:
                best, where = gap, a
    return best, where


def max_rise(alpha: Sequence[float], values: Sequence[float]) -> float:
    """Return the largest increase ``values(a') - values(a)`` over ``0 <= a < a' <= 1`` (>= 0)."""
    lowest = float("inf")
    rise = 0.0
    for a, v in zip(alpha, values, strict=True):
        if 0.0 <= a <= 1.0:
            rise = max(rise, v - lowest)
            lowest = min(lowest, v)
    return rise


def _grid(alpha_range: Sequence[float], num_points: int) -> list[float]:
    ok = (
        isinstance(alpha_range, Sequence)
        and len(alpha_range) == 2
        and all(isinstance(a, (int, float)) for a in alpha_range)
        and alpha_range[0] <= 0.0
        and alpha_range[1] >= 1.0
    )
    require(ok, "alpha_range", alpha_range, "(first, last) with first <= 0 and last >= 1")
    first, last = float(alpha_range[0]), float(alpha_range[1])
    grid = [first + (last - first) * i / (num_points - 1) for i in range(num_points)]
    snapped = [round(a) if abs(a - round(a)) < 1e-9 and round(a) in (0, 1) else a for a in grid]
    require(
        0.0 in snapped and 1.0 in snapped,
        "num_points",
        num_points,
        f"a count whose grid over {tuple(alpha_range)} contains 0 and 1 "
        "(e.g. 25 for (0, 1), 21 or 25 for (-0.5, 1.5))",
    )
    return [float(a) for a in snapped]


def _result(
    alpha: list[float],
    values: dict[str, SplitValues],
    num_samples: dict[str, int],
    **meta: Any,
) -> InterpolationResult:
    loss = {k: v.loss.tolist() for k, v in values.items()}
    has_accuracy = all(v.accuracy is not None for v in values.values())
    accuracy = {k: v.accuracy.tolist() for k, v in values.items() if v.accuracy is not None}
    loss_barriers = {k: barrier(alpha, curve) for k, curve in loss.items()}
    error_barriers = {k: barrier(alpha, [1.0 - a for a in curve]) for k, curve in accuracy.items()}
    rises = {k: max_rise(alpha, curve) for k, curve in loss.items()}
    return InterpolationResult(
        alpha=alpha,
        loss=loss,
        accuracy=accuracy if has_accuracy else None,
        loss_barrier={k: b for k, (b, _) in loss_barriers.items()},
        loss_barrier_alpha={k: a for k, (_, a) in loss_barriers.items()},
        error_barrier={k: b for k, (b, _) in error_barriers.items()} if has_accuracy else None,
        error_barrier_alpha=(
            {k: a for k, (_, a) in error_barriers.items()} if has_accuracy else None
        ),
        monotonic={k: r == 0.0 for k, r in rises.items()},
        max_rise=rises,
        num_samples=num_samples,
        **meta,
    )


def _warn_once(message: str) -> None:
    """Log ``message`` as a warning the first time it is seen in this process."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)
