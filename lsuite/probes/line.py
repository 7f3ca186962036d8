"""Loss and accuracy along lines through the weights, and the width of the low-loss region."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import torch

from lsuite.errors import ConfigError, require
from lsuite.evaluate import (
    BATCHINGS,
    AccuracyFn,
    AffinePoints,
    Batching,
    evaluate_points,
    grid_axis,
    resolve_accuracy_fn,
)
from lsuite.functional.params import Params, flatten, norm, sub
from lsuite.probes.base import Probe, ProbeData, ProbeResult
from lsuite.probes.batch_norm_stats import batch_norm_statistics
from lsuite.probes.directions import (
    gradient_direction,
    hessian_directions,
    radial_direction,
    random_direction,
    rescale,
)
from lsuite.probes.point import ModelPoint, as_params

LineDirection = Literal["random", "radial", "init", "gradient", "hessian"]
LINE_DIRECTIONS = ("random", "radial", "init", "gradient", "hessian")
Scale = Literal["model", "unit"]


@dataclasses.dataclass(frozen=True)
class LineResult(ProbeResult):
    """Loss and accuracy at ``w + t d`` for each direction ``d`` and split.

    ``t = 0`` is the measured weights ``w``. Every direction is scaled to the same norm (``scale``:
    ``||w||`` or 1), so ``t`` is in units of that norm for all of them.

    Attributes:
        t: ``(N,)`` coordinates, containing 0.
        directions: the direction names, in order.
        loss: direction -> split -> ``(N,)`` mean loss.
        accuracy: direction -> split -> ``(N,)`` accuracy (top-1 where the targets are class
            indices, see `lsuite.evaluate.class_targets`, or ``accuracy_fn``), else None.
        width_minus: direction -> split -> the ``|t|`` below 0 at which the loss first exceeds
            ``loss(0) + delta`` (linear interpolation between grid points; the grid point
            itself when the loss there is not finite), or None when it never does on the grid.
        width_plus: the same above 0.
        delta: the loss rise defining the width (Fort & Jastrzebski 2019, "Large Scale
            Structure of Neural Network Loss Landscapes").
        scale: ``"model"`` (``||d|| = ||w||``) or ``"unit"`` (``||d|| = 1``).
        direction_norm: direction -> ``||d||``; a width times it is a Euclidean distance.
        markers: direction -> named ``t`` positions: ``origin`` (all weights zero, radial) and
            ``init`` (the initial weights, init direction).
        hessian_eigenvalue: the eigenvalue of the ``hessian`` direction, or None.
        bn_statistics: BatchNorm statistics used at every point (see `batch_norm_statistics`).
        batching: ``"vmap"`` or ``"loop"``.
        num_samples: split -> probe samples (all ranks).
    """

    t: list[float]
    directions: list[str]
    loss: dict[str, dict[str, list[float]]]
    accuracy: dict[str, dict[str, list[float]]] | None
    width_minus: dict[str, dict[str, float | None]]
    width_plus: dict[str, dict[str, float | None]]
    delta: float
    scale: str
    direction_norm: dict[str, float]
    markers: dict[str, dict[str, float]]
    hessian_eigenvalue: float | None
    bn_statistics: str
    batching: str
    num_samples: dict[str, int]

    def scalars(self) -> dict[str, float]:
        """Return ``<direction>_<split>_width_minus`` / ``_width_plus`` where they exist."""
        out: dict[str, float] = {}
        for name in self.directions:
            for side, widths in (("minus", self.width_minus), ("plus", self.width_plus)):
                for split, value in widths[name].items():
                    if value is not None:
                        out[f"{name}_{split}_width_{side}"] = value
        return out


class Line(Probe):
    """Evaluate the loss along straight lines through the weights and measure their widths.

    Directions: ``random`` (Gaussian, filter-normalised, Li et al. 2018), ``radial`` (``w``
    itself: ``t = -1`` is the origin under ``scale="model"``), ``init`` (from the initial weights
    through ``w``; declared in `point_specs`, passed to `run` as ``init``), ``gradient`` (the
    ascent direction of the mean loss on the primary split) and ``hessian`` (the top Hessian
    eigenvector on the primary split). Every split in ``data`` is evaluated. Under DDP each rank
    evaluates every point on its share of the batches (see `lsuite.evaluate`).

    Args:
        directions: names of the directions, some of ``random``, ``radial``, ``init``,
            ``gradient``, ``hessian``.
        num_points: grid points per direction, ``>= 3``; the grid must contain 0.
        span: ``(first, last)`` range of ``t``, ``first < 0 < last``.
        scale: common norm of the directions: ``"model"`` (``||w||``) or ``"unit"`` (1).
        delta: loss rise (absolute, > 0) that defines the width.
        keep_1d: keep biases and other 1-D parameters in the random direction (zeroed by
            default, as Li et al.'s ``biasbn``).
        batching: ``"auto"``, ``"vmap"`` or ``"loop"`` (see `lsuite.evaluate`).
        accuracy_fn: ``accuracy_fn(outputs, targets)``, a batch's mean accuracy (a callable or
            a dotted path), for outputs whose top-1 accuracy is undefined; None: top-1.
        name: probe name (default ``"line"``).

    Raises:
        ConfigError: for an argument out of range.
    """

    def __init__(
        self,
        directions: Sequence[LineDirection] = ("random", "radial", "gradient"),
        num_points: int = 41,
        span: Sequence[float] = (-1.0, 1.0),
        scale: Scale = "model",
        delta: float = 0.1,
        keep_1d: bool = False,
        batching: Batching = "auto",
        accuracy_fn: AccuracyFn | str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        directions = [directions] if isinstance(directions, str) else list(directions)
        require(
            len(directions) >= 1
            and all(d in LINE_DIRECTIONS for d in directions)
            and len(set(directions)) == len(directions),
            "directions",
            directions,
            f"a non-empty list of distinct names from {list(LINE_DIRECTIONS)}",
        )
        self.directions = directions
        self.t = grid_axis(span, num_points)
        self.num_points = num_points
        self.span = (float(span[0]), float(span[1]))
        require(scale in ("model", "unit"), "scale", scale, "one of ['model', 'unit']")
        self.scale: Scale = scale
        require(
            isinstance(delta, (int, float)) and not isinstance(delta, bool) and delta > 0,
            "delta",
            delta,
            "a number > 0",
        )
        self.delta = float(delta)
        require(isinstance(keep_1d, bool), "keep_1d", keep_1d, "true or false")
        self.keep_1d = keep_1d
        require(batching in BATCHINGS, "batching", batching, f"one of {list(BATCHINGS)}")
        self.batching: Batching = batching
        self.accuracy_fn = resolve_accuracy_fn(accuracy_fn)

    def point_specs(self) -> dict[str, str | list[str]]:
        """Return ``{"init": "init"}`` with the ``init`` direction, else nothing."""
        return {"init": "init"} if "init" in self.directions else {}

    def run(
        self,
        point: ModelPoint,
        data: ProbeData,
        *,
        generator: torch.Generator,
        init: Params | None = None,
    ) -> LineResult:
        """Evaluate every direction's line through ``point``.

        Args:
            point: the weights at ``t = 0``.
            data: probe batches by split; the first split defines the gradient and Hessian.
            generator: CPU generator for the random direction and the Lanczos start.
            init: the initial weights, for the ``init`` direction (same keys as
                ``point.params``).

        Returns:
            The curves and widths.

        Raises:
            ConfigError: for the ``init`` direction without ``init``.
        """
        source = next(iter(data.values()))
        params = point.params
        target = float(norm(params)) if self.scale == "model" else 1.0
        raw: dict[str, Params] = {}
        markers: dict[str, dict[str, float]] = {}
        eigenvalue = None
        for name in self.directions:
            if name == "random":
                raw[name] = random_direction(params, generator, keep_1d=self.keep_1d)
            elif name == "radial":
                raw[name] = radial_direction(params)
                markers[name] = {"origin": -float(norm(params)) / target}
            elif name == "init":
                if init is None:
                    raise ConfigError(
                        "directions: 'init' needs the initial weights passed as init= "
                        "(see point_specs)"
                    )
                raw[name] = sub(params, as_params(init, params))
                markers[name] = {"init": -float(norm(raw[name])) / target}
            elif name == "gradient":
                raw[name] = gradient_direction(point, source)
            else:
                vectors, values = hessian_directions(point, source, ("largest",), generator)
                raw[name], eigenvalue = vectors[0], values[0]
        scaled = {k: rescale(d, params, self.scale) for k, d in raw.items()}
        count, n = len(self.directions), len(self.t)
        coefficients = torch.zeros(count * n, count, dtype=torch.float64)
        for j in range(count):
            coefficients[j * n : (j + 1) * n, j] = torch.tensor(self.t, dtype=torch.float64)
        stacked = torch.stack([flatten(scaled[k]) for k in self.directions])
        points = AffinePoints(flatten(params), stacked, coefficients)
        values, mode = evaluate_points(
            point, data, points, batching=self.batching, accuracy_fn=self.accuracy_fn
        )
        loss = {
            name: {s: v.loss[j * n : (j + 1) * n].tolist() for s, v in values.items()}
            for j, name in enumerate(self.directions)
        }
        has_accuracy = all(v.accuracy is not None for v in values.values())
        accuracy = {
            name: {
                s: v.accuracy[j * n : (j + 1) * n].tolist()
                for s, v in values.items()
                if v.accuracy is not None
            }
            for j, name in enumerate(self.directions)
        }
        widths = {
            name: {s: width(self.t, curve, self.delta) for s, curve in loss[name].items()}
            for name in self.directions
        }
        return LineResult(
            t=list(self.t),
            directions=list(self.directions),
            loss=loss,
            accuracy=accuracy if has_accuracy else None,
            width_minus={k: {s: w[0] for s, w in v.items()} for k, v in widths.items()},
            width_plus={k: {s: w[1] for s, w in v.items()} for k, v in widths.items()},
            delta=self.delta,
            scale=self.scale,
            direction_norm={k: float(norm(d)) for k, d in scaled.items()},
            markers=markers,
            hessian_eigenvalue=eigenvalue,
            bn_statistics=batch_norm_statistics(point, recomputed=False),
            batching=mode,
            num_samples={k: s.num_samples for k, s in data.items()},
        )

    def __repr__(self) -> str:
        return (
            f"Line(directions={self.directions}, num_points={self.num_points}, span={self.span}, "
            f"scale={self.scale!r}, delta={self.delta}, name={self.name!r})"
        )


def width(
    t: Sequence[float], values: Sequence[float], delta: float
) -> tuple[float | None, float | None]:
    """Return how far from ``t = 0`` the curve stays below ``values(0) + delta`` on each side.

    Args:
        t: ascending coordinates containing 0.
        values: curve values at ``t``.
        delta: the rise that ends the low-loss region (> 0).

    Returns:
        ``(minus, plus)``: the distances ``|t|`` to the first crossing below and above 0,
        linearly interpolated between grid points (the grid point itself when its value is not
        finite); None on a side where the curve never rises by ``delta``.
    """
    center = list(t).index(0.0)
    level = values[center] + delta

    def crossing(indices: range) -> float | None:
        previous = center
        for i in indices:
            v = values[i]
            if not math.isfinite(v):
                return abs(t[i])
            if v >= level:
                fraction = (level - values[previous]) / (v - values[previous])
                return abs(t[previous] + fraction * (t[i] - t[previous]))
            previous = i
        return None

    return crossing(range(center - 1, -1, -1)), crossing(range(center + 1, len(t)))
