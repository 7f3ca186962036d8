"""Loss and accuracy on a 2-D plane through weight space (random, Hessian, trajectory, points)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from lsuite.anchors.history import Observation
from lsuite.anchors.specs import parse_spec
from lsuite.errors import ConfigError, require
from lsuite.evaluate import (
    BATCHINGS,
    AccuracyFn,
    AffinePoints,
    Batching,
    SplitValues,
    evaluate_points,
    grid_axis,
    resolve_accuracy_fn,
)
from lsuite.functional.params import Params, flatten, norm, scale
from lsuite.probes.base import Probe, ProbeData, ProbeResult
from lsuite.probes.batch_norm_stats import batch_norm_statistics
from lsuite.probes.data_source import DataSource
from lsuite.probes.directions import (
    cosine,
    hessian_directions,
    plane_through,
    random_direction,
    rescale,
    trajectory_directions,
)
from lsuite.probes.point import ModelPoint, as_params

PlaneDirections = Literal["random", "hessian", "trajectory", "points"]
Normalization = Literal["filter", "model", "unit", "fit"]
HessianWhich = Literal["largest", "extremes"]

_ALLOWED: dict[str, tuple[str, ...]] = {
    "random": ("filter", "model", "unit"),
    "hessian": ("unit", "model"),
    "trajectory": ("fit", "unit"),
    "points": ("fit", "unit"),
}
FIT_FRACTION = 0.8
"""With ``normalization="fit"`` the marked points fill this fraction of the smaller half-span."""


@dataclasses.dataclass(frozen=True)
class PlaneResult(ProbeResult):
    """Loss and accuracy at ``origin + x d1 + y d2`` on a grid, for each split.

    Values are nested lists with ``values[i][j]`` at ``(x[i], y[j])`` (first index along ``d1``).
    Coordinates are in units of the directions as normalised (see ``normalization``).

    Attributes:
        x: ``(R,)`` coordinates along ``d1``, containing 0.
        y: ``(R,)`` coordinates along ``d2``, containing 0.
        loss: split -> ``(R, R)`` mean loss.
        accuracy: split -> ``(R, R)`` accuracy (top-1 where the targets are class indices, see
            `lsuite.evaluate.class_targets`, or ``accuracy_fn``), else None.
        directions: ``random``, ``hessian``, ``trajectory`` or ``points``.
        normalization: ``filter`` (each filter of a direction has the norm of the weight
            filter, Li et al. 2018), ``model`` (``||d|| = ||w||``), ``unit`` (``||d|| = 1``) or
            ``fit`` (orthonormal directions scaled together so the marked points fill
            `FIT_FRACTION` of the grid).
        center_loss: split -> loss at ``(0, 0)`` (the measured weights, or the centroid of the
            three points for ``points``).
        min_loss: split -> the smallest loss on the grid.
        min_location: split -> ``[x, y]`` of that minimum.
        direction_norms: ``[||d1||, ||d2||]``.
        direction_cosine: cosine of the angle between ``d1`` and ``d2``.
        markers: name -> ``[x, y]`` of points to mark (``center``, the three ``points``, the
            trajectory's ends).
        trajectory: ``(T, 2)`` coordinates of the weights seen during training (projected onto
            the plane; the measured weights, at ``(0, 0)``, follow them), or None.
        trajectory_steps: the global step of each trajectory point, or None.
        explained_variance: fraction of the trajectory's variance along ``d1`` and ``d2``
            (``trajectory`` only), or None.
        hessian_eigenvalues: eigenvalues of ``d1`` and ``d2`` (``hessian`` only), or None.
        bn_statistics: BatchNorm statistics used at every point (see `batch_norm_statistics`).
        batching: ``"vmap"`` or ``"loop"``.
        num_samples: split -> probe samples (all ranks).
    """

    x: list[float]
    y: list[float]
    loss: dict[str, list[list[float]]]
    accuracy: dict[str, list[list[float]]] | None
    directions: str
    normalization: str
    center_loss: dict[str, float]
    min_loss: dict[str, float]
    min_location: dict[str, list[float]]
    direction_norms: list[float]
    direction_cosine: float
    markers: dict[str, list[float]]
    trajectory: list[list[float]] | None
    trajectory_steps: list[int] | None
    explained_variance: list[float] | None
    hessian_eigenvalues: list[float] | None
    bn_statistics: str
    batching: str
    num_samples: dict[str, int]

    def scalars(self) -> dict[str, float]:
        """Return ``<split>_center_loss`` and ``<split>_min_loss``."""
        out: dict[str, float] = {}
        for split in self.loss:
            out[f"{split}_center_loss"] = self.center_loss[split]
            out[f"{split}_min_loss"] = self.min_loss[split]
        return out


class Plane(Probe):
    """Evaluate the loss on a square grid in a plane through weight space.

    Directions (``directions``):

    - ``random``: two independent Gaussian directions, filter-normalised by default
      (Li, Xu, Taylor, Studer, Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets");
    - ``hessian``: the top two Hessian eigenvectors of the primary split's mean loss, or the top
      and the most negative (``hessian_which="extremes"``), unit norm by default;
    - ``trajectory``: the first two principal components of the weights observed during
      training, centred on the measured weights (Li et al. 2018); the path is in the record;
    - ``points``: the plane through three weight vectors (``points``: specs such as ``init``,
      ``middle``, ``current``, ``epoch:N`` or checkpoint paths, or anchors named like the
      specs), centred on their centroid; their coordinates are in the record.

    The trajectory and the three points are declared in `point_specs` (``{"trajectory":
    "trajectory"}``, ``{"points": [...]}``), resolved by the caller and passed to `run`.

    Every split in ``data`` is evaluated. Under DDP each rank evaluates every grid point on its
    share of the batches, which shares the work (see `lsuite.evaluate`).

    Args:
        directions: how the plane is chosen (above).
        num_points: grid points per axis ``R``, ``>= 3`` (21 gives a 21 x 21 grid); the grid
            must contain 0.
        span: ``(first, last)`` coordinate range of both axes, ``first < 0 < last``.
        normalization: scaling of the directions (see `PlaneResult.normalization`); None picks
            ``filter`` for random, ``unit`` for hessian and ``fit`` for trajectory and points.
        keep_1d: with ``filter`` normalisation, keep biases and other 1-D parameters in random
            directions, each scaled to the norm of the parameter (zeroed by default, as Li et
            al.'s ``biasbn``).
        hessian_which: ``"largest"`` (top two) or ``"extremes"`` (top and most negative).
        points: three weight specs for ``directions="points"``.
        batching: ``"auto"``, ``"vmap"`` or ``"loop"`` (see `lsuite.evaluate`).
        accuracy_fn: ``accuracy_fn(outputs, targets)``, a batch's mean accuracy (a callable or
            a dotted path), for outputs whose top-1 accuracy is undefined; None: top-1.
        name: probe name (default ``"plane"``).

    Raises:
        ConfigError: for an argument out of range or a normalization the directions do not
            allow.
    """

    def __init__(
        self,
        directions: PlaneDirections = "random",
        num_points: int = 21,
        span: Sequence[float] = (-1.0, 1.0),
        normalization: Normalization | None = None,
        keep_1d: bool = False,
        hessian_which: HessianWhich = "largest",
        points: Sequence[str] = ("init", "middle", "current"),
        batching: Batching = "auto",
        accuracy_fn: AccuracyFn | str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        require(directions in _ALLOWED, "directions", directions, f"one of {list(_ALLOWED)}")
        self.directions: PlaneDirections = directions
        self.axis = grid_axis(span, num_points)
        self.num_points = num_points
        self.span = (float(span[0]), float(span[1]))
        allowed = _ALLOWED[directions]
        normalization = allowed[0] if normalization is None else normalization
        require(
            normalization in allowed,
            "normalization",
            normalization,
            f"one of {list(allowed)} for directions={directions!r}, or null",
        )
        self.normalization: Normalization = normalization  # type: ignore[assignment]
        require(isinstance(keep_1d, bool), "keep_1d", keep_1d, "true or false")
        self.keep_1d = keep_1d
        require(
            hessian_which in ("largest", "extremes"),
            "hessian_which",
            hessian_which,
            "one of ['largest', 'extremes']",
        )
        self.hessian_which: HessianWhich = hessian_which
        specs = [points] if isinstance(points, str) else list(points)
        require(len(specs) == 3, "points", points, "three weight specs")
        check = directions == "points"  # files of an unused default need not exist
        self.points = [parse_spec(s, "points", check_files=check).text for s in specs]
        require(len(set(self.points)) == 3, "points", points, "three different specs")
        require(batching in BATCHINGS, "batching", batching, f"one of {list(BATCHINGS)}")
        self.batching: Batching = batching
        self.accuracy_fn = resolve_accuracy_fn(accuracy_fn)

    def point_specs(self) -> dict[str, str | list[str]]:
        """Return the trajectory or the three points the plane needs (none for random/hessian)."""
        if self.directions == "trajectory":
            return {"trajectory": "trajectory"}
        if self.directions == "points":
            return {"points": list(self.points)}
        return {}

    def run(
        self,
        point: ModelPoint,
        data: ProbeData,
        *,
        generator: torch.Generator,
        points: Sequence[Params] | None = None,
        trajectory: Sequence[Observation] | None = None,
    ) -> PlaneResult:
        """Evaluate the grid.

        Args:
            point: the measured weights (the centre, except for ``points``).
            data: probe batches by split; the first split defines the Hessian.
            generator: CPU generator for random directions and the Lanczos start.
            points: for ``points``: the three weights of the ``points`` specs, in order.
            trajectory: for ``trajectory``: the weights seen during training, in step order.

        Returns:
            The grid values, directions and marks.

        Raises:
            ConfigError: when the trajectory or the points the directions need are not given.
        """
        needed = {"trajectory": trajectory, "points": points}.get(self.directions, ())
        if needed is None:
            raise ConfigError(
                f"{self.directions}: not given; directions={self.directions!r} needs "
                f"{self.directions}= (see point_specs)"
            )
        params = point.params
        extra: dict[str, Any] = {}
        markers: dict[str, list[float]] = {}
        origin = params
        if self.directions == "random":
            first, second = (
                random_direction(params, generator, keep_1d=self.keep_1d)
                if self.normalization == "filter"
                else random_direction(params, generator, normalization=self.normalization)
                for _ in range(2)
            )
            markers["center"] = [0.0, 0.0]
        elif self.directions == "hessian":
            ends = (
                ("largest", "largest")
                if self.hessian_which == "largest"
                else ("largest", "smallest")
            )
            (first, second), values = hessian_directions(point, _primary(data), ends, generator)
            if self.normalization == "model":
                first, second = rescale(first, params, "model"), rescale(second, params, "model")
            extra["hessian_eigenvalues"] = values
            markers["center"] = [0.0, 0.0]
        elif self.directions == "trajectory":
            seen = list(trajectory or [])
            # PCA on the CPU, where the observations are kept; the directions then move over
            center = {k: v.detach().cpu() for k, v in params.items()}
            found, explained, coords = trajectory_directions([o.params for o in seen], center)
            first, second = (as_params(d, params) for d in found)
            first, second, coords = self._fit(first, second, coords)
            extra["trajectory"] = coords.tolist()
            extra["trajectory_steps"] = [o.step for o in seen]
            extra["explained_variance"] = explained
            markers.update({"start": coords[0].tolist(), "center": [0.0, 0.0]})
        else:
            weights = [as_params(w, params) for w in points or []]
            require(len(weights) == 3, "points", f"{len(weights)} points", "three weight dicts")
            origin, (first, second), coords = plane_through(weights)
            first, second, coords = self._fit(first, second, coords)
            markers.update({s: c for s, c in zip(self.points, coords.tolist(), strict=True)})
        values, mode = section_values(
            point,
            data,
            origin,
            (first, second),
            self.axis,
            self.axis,
            batching=self.batching,
            accuracy_fn=self.accuracy_fn,
        )
        return _result(
            self.axis,
            values,
            directions=self.directions,
            normalization=self.normalization,
            direction_norms=[float(norm(first)), float(norm(second))],
            direction_cosine=cosine(first, second),
            markers=markers,
            trajectory=extra.get("trajectory"),
            trajectory_steps=extra.get("trajectory_steps"),
            explained_variance=extra.get("explained_variance"),
            hessian_eigenvalues=extra.get("hessian_eigenvalues"),
            bn_statistics=batch_norm_statistics(point, recomputed=False),
            batching=mode,
            num_samples={k: s.num_samples for k, s in data.items()},
        )

    def _fit(self, first: Params, second: Params, coords: Tensor) -> tuple[Params, Params, Tensor]:
        """Scale unit directions so the marked coordinates fill `FIT_FRACTION` of the grid."""
        if self.normalization != "fit":
            return first, second, coords
        extent = float(coords.abs().max())
        half = min(-self.span[0], self.span[1])
        factor = extent / (FIT_FRACTION * half) if extent > 0 else 1.0
        return scale(first, factor), scale(second, factor), coords / factor

    def __repr__(self) -> str:
        return (
            f"Plane(directions={self.directions!r}, num_points={self.num_points}, "
            f"span={self.span}, normalization={self.normalization!r}, name={self.name!r})"
        )


def section_values(
    point: ModelPoint,
    data: Mapping[str, DataSource],
    origin: Params,
    directions: tuple[Params, Params],
    x: Sequence[float],
    y: Sequence[float],
    *,
    batching: Batching = "auto",
    accuracy_fn: AccuracyFn | None = None,
) -> tuple[dict[str, SplitValues], str]:
    """Return the loss and accuracy at ``origin + x[i] d1 + y[j] d2`` for every ``(i, j)``.

    Args:
        point: the frozen model.
        data: probe batches by split.
        origin: the weights at ``(0, 0)`` (same keys and shapes as ``point.params``).
        directions: ``(d1, d2)``, same keys and shapes.
        x: ``(R1,)`` coordinates along ``d1``.
        y: ``(R2,)`` coordinates along ``d2``.
        batching: ``"auto"``, ``"vmap"`` or ``"loop"``.
        accuracy_fn: a batch's mean accuracy; None for top-1 (see `evaluate_points`).

    Returns:
        ``({split: SplitValues}, mode)``; values are flat ``(R1 * R2,)``, index ``i * R2 + j``.
    """
    grid = torch.cartesian_prod(
        torch.tensor(list(x), dtype=torch.float64), torch.tensor(list(y), dtype=torch.float64)
    )
    stacked = torch.stack([flatten(directions[0]), flatten(directions[1])])
    points = AffinePoints(flatten(origin), stacked, grid)
    return evaluate_points(point, data, points, batching=batching, accuracy_fn=accuracy_fn)


def _primary(data: ProbeData) -> DataSource:
    if not data:
        raise ConfigError("data: got no splits; expected at least one")
    return next(iter(data.values()))


def _result(axis: list[float], values: dict[str, SplitValues], **meta: Any) -> PlaneResult:
    r = len(axis)
    loss = {k: v.loss.reshape(r, r) for k, v in values.items()}
    accuracy = {k: v.accuracy.reshape(r, r) for k, v in values.items() if v.accuracy is not None}
    c = axis.index(0.0)
    minima = {}
    for k, grid in loss.items():
        finite = torch.where(torch.isfinite(grid), grid, torch.inf)
        flat_index = int(finite.argmin())
        minima[k] = (
            float(finite.reshape(-1)[flat_index]),
            [axis[flat_index // r], axis[flat_index % r]],
        )
    return PlaneResult(
        x=list(axis),
        y=list(axis),
        loss={k: v.tolist() for k, v in loss.items()},
        accuracy={k: v.tolist() for k, v in accuracy.items()}
        if len(accuracy) == len(loss)
        else None,
        center_loss={k: float(v[c, c]) for k, v in loss.items()},
        min_loss={k: m[0] for k, m in minima.items()},
        min_location={k: m[1] for k, m in minima.items()},
        **meta,
    )
