"""Loss and error over a trained curve or simplex, next to the straight line between its ends."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

from lsuite.errors import require
from lsuite.evaluate import (
    BATCHINGS,
    AccuracyFn,
    AffinePoints,
    Batching,
    SplitValues,
    evaluate_points,
    resolve_accuracy_fn,
)
from lsuite.functional.curves import PointFamily, find_family, simplex_grid
from lsuite.probes.base import Probe, ProbeData, ProbeResult
from lsuite.probes.batch_norm_stats import BatchNormRecompute, batch_norm_statistics
from lsuite.probes.point import ModelPoint

SKIPPED = (
    "the measured network is no curve or simplex (module=curve or module=simplex attach one); "
    "nothing to measure"
)


@dataclasses.dataclass(frozen=True)
class CurveResult(ProbeResult):
    """Loss and accuracy over a curve or a simplex of networks, and over its flat counterpart.

    For a curve (``kind`` ``bezier`` / ``polychain``), the points are ``w(t)`` on the grid
    ``t`` (0: start, 1: end) and the counterpart is the straight line ``(1 - t) w(0) + t w(1)``
    on the same grid. For a simplex, the points are the barycentric grid ``coordinates`` over all
    vertices, and the counterpart is the face spanned by the fixed vertices (the grid rows that
    put no weight on a free vertex; for two fixed vertices, the straight line between them).

    A barrier is ``max_c [f(c) - sum_i c_i f(v_i)]`` over the grid (at least 0): the largest rise
    of ``f`` (loss, or error ``1 - accuracy``) above the interpolation of its values at the
    vertices (a curve's two ends; Frankle et al.'s barrier on the line). ``*_max`` are the
    largest values over the grid (Garipov et al. report the curve's maximum error).

    Attributes:
        kind: ``"bezier"``, ``"polychain"``, ``"simplex"``, or ``"none"`` when skipped.
        skipped: why nothing was measured (a network that is no curve or simplex), or None.
        t: ``(N,)`` curve positions (empty for a simplex).
        coordinates: ``(N, V)`` barycentric coordinates of a simplex's grid (empty for a curve).
        fixed: positions of the frozen control points / vertices.
        loss: split -> ``(N,)`` mean loss over the curve / simplex grid.
        accuracy: split -> ``(N,)`` accuracy, or None where it is undefined.
        line_loss: split -> mean loss over the counterpart (``(N,)`` on ``t`` for a curve; over
            the face rows, in the order of ``face_rows``, for a simplex).
        line_accuracy: split -> accuracy over the counterpart, or None.
        face_rows: for a simplex, the rows of ``coordinates`` on the fixed vertices' face.
        loss_barrier: split -> barrier of the loss over the curve / simplex.
        error_barrier: split -> barrier of the error (None without accuracy).
        line_loss_barrier: split -> barrier of the loss over the counterpart.
        line_error_barrier: split -> barrier of the error over the counterpart (None without).
        loss_max: split -> the largest loss over the curve / simplex.
        error_max: split -> the largest error (None without accuracy).
        line_loss_max: split -> the largest loss over the counterpart.
        line_error_max: split -> the largest error over the counterpart (None without).
        bn_statistics: BatchNorm statistics used at every point (``"none"``, ``"batch"``,
            ``"recomputed"`` on ``bn_recompute_batches`` training probe batches per rank, or
            ``"point"``: the measured network's running statistics).
        batching: ``"vmap"`` or ``"loop"`` (empty when skipped).
        num_samples: split -> probe samples (all ranks).
    """

    kind: str
    skipped: str | None
    t: list[float]
    coordinates: list[list[float]]
    fixed: list[int]
    loss: dict[str, list[float]]
    accuracy: dict[str, list[float]] | None
    line_loss: dict[str, list[float]]
    line_accuracy: dict[str, list[float]] | None
    face_rows: list[int]
    loss_barrier: dict[str, float]
    error_barrier: dict[str, float] | None
    line_loss_barrier: dict[str, float]
    line_error_barrier: dict[str, float] | None
    loss_max: dict[str, float]
    error_max: dict[str, float] | None
    line_loss_max: dict[str, float]
    line_error_max: dict[str, float] | None
    bn_statistics: str
    batching: str
    num_samples: dict[str, int]

    def scalars(self) -> dict[str, float]:
        """Return barriers and maxima of the family and its line (``skipped: 1`` if skipped)."""
        if self.skipped is not None:
            return {"skipped": 1.0}
        out: dict[str, float] = {}
        for split in self.loss:
            out[f"{split}_loss_barrier"] = self.loss_barrier[split]
            out[f"{split}_line_loss_barrier"] = self.line_loss_barrier[split]
            out[f"{split}_loss_max"] = self.loss_max[split]
            out[f"{split}_line_loss_max"] = self.line_loss_max[split]
            if self.error_max is not None and self.line_error_max is not None:
                out[f"{split}_error_max"] = self.error_max[split]
                out[f"{split}_line_error_max"] = self.line_error_max[split]
            if self.error_barrier is not None and self.line_error_barrier is not None:
                out[f"{split}_error_barrier"] = self.error_barrier[split]
                out[f"{split}_line_error_barrier"] = self.line_error_barrier[split]
        return out


class Curve(Probe):
    """Evaluate the curve or simplex the measured network belongs to, and its flat counterpart.

    The measured network must carry its family (`lsuite.functional.curves.find_family`): the
    network ``probe_network()`` of ``module=curve`` / ``module=simplex`` returns, in training or
    through ``lsuite-probe`` on such a run's checkpoint, or that network passed to `measure`.
    Any other network (e.g. the default classifier) gives a record with ``skipped`` set and no
    values, so ``probes=curve`` is harmless in any run. Every point is evaluated on every split.

    Args:
        num_points: curve grid size ``N >= 2``, evenly spaced ``t`` from 0 to 1.
        simplex_resolution: steps ``R >= 1`` per edge of a simplex's barycentric grid.
        bn_recompute_batches: for networks with BatchNorm, recompute the running statistics at
            every point on that many training probe batches per rank (0: use the measured
            network's); networks without BatchNorm ignore it (``bn_statistics: "none"``).
        batching: ``"auto"``, ``"vmap"`` or ``"loop"`` (see `lsuite.evaluate`).
        accuracy_fn: ``accuracy_fn(outputs, targets)`` (a callable or a dotted path); None: top-1.
        name: probe name (default ``"curve"``).

    Raises:
        ConfigError: for an argument out of range.
    """

    def __init__(
        self,
        num_points: int = 21,
        simplex_resolution: int = 4,
        bn_recompute_batches: int = 2,
        batching: Batching = "auto",
        accuracy_fn: AccuracyFn | str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        for key, value, low in (
            ("num_points", num_points, 2),
            ("simplex_resolution", simplex_resolution, 1),
            ("bn_recompute_batches", bn_recompute_batches, 0),
        ):
            require(
                isinstance(value, int) and not isinstance(value, bool) and value >= low,
                key,
                value,
                f"an int >= {low}",
            )
        require(batching in BATCHINGS, "batching", batching, f"one of {list(BATCHINGS)}")
        self.num_points = num_points
        self.simplex_resolution = simplex_resolution
        self.bn_recompute_batches = bn_recompute_batches
        self.batching: Batching = batching
        self.accuracy_fn = resolve_accuracy_fn(accuracy_fn)

    def run(self, point: ModelPoint, data: ProbeData, *, generator: torch.Generator) -> CurveResult:
        """Evaluate the family of ``point``'s network (see the class doc).

        Args:
            point: the measured network (a curve's midpoint, a simplex's centroid).
            data: probe batches by split.
            generator: unused (the probe draws nothing).

        Returns:
            The values over the family and its counterpart, or a skipped result.
        """
        del generator
        family = find_family(point.skeleton)
        samples = {k: s.num_samples for k, s in data.items()}
        if family is None:
            return _skipped(samples)
        points = family.points().to(point.device, point.dtype)
        require(
            points.shape[1] == sum(v.numel() for v in point.params.values()),
            "points",
            tuple(points.shape),
            "control points with as many entries as the network's parameters",
        )
        statistics = batch_norm_statistics(point, recomputed=False)
        buffers_fn = None
        if statistics == "point" and self.bn_recompute_batches > 0 and "train" in data:
            buffers_fn = BatchNormRecompute(point, data["train"], self.bn_recompute_batches)
            statistics = "recomputed"
        rows, line_rows, face_rows = self._rows(family)
        base = torch.zeros(points.shape[1], dtype=points.dtype, device=points.device)

        def evaluate(coefficients: Tensor) -> tuple[dict[str, SplitValues], str]:
            return evaluate_points(
                point,
                data,
                AffinePoints(base, points, coefficients),
                batching=self.batching,
                buffers_fn=buffers_fn,
                accuracy_fn=self.accuracy_fn,
            )

        values, mode = evaluate(rows)
        if family.kind == "simplex":
            line_values = {k: _take(v, face_rows) for k, v in values.items()}
        else:
            line_values, _ = evaluate(line_rows)
        # the chord: a curve's values interpolated between its ends, a simplex's between all
        # its vertices (its face: between the fixed ones)
        line_chord = line_rows[:, list(family.fixed)]
        chord = rows if family.kind == "simplex" else line_chord
        curve = _summaries(values, chord)
        line = _summaries(line_values, line_chord)
        t = _positions(self.num_points).tolist()
        return CurveResult(
            kind=family.kind,
            skipped=None,
            t=t if family.kind != "simplex" else [],
            coordinates=rows.tolist() if family.kind == "simplex" else [],
            fixed=list(family.fixed),
            loss=curve["loss"],
            accuracy=curve["accuracy"],
            line_loss=line["loss"],
            line_accuracy=line["accuracy"],
            face_rows=face_rows,
            loss_barrier=curve["loss_barrier"],
            error_barrier=curve["error_barrier"],
            line_loss_barrier=line["loss_barrier"],
            line_error_barrier=line["error_barrier"],
            loss_max=curve["loss_max"],
            error_max=curve["error_max"],
            line_loss_max=line["loss_max"],
            line_error_max=line["error_max"],
            bn_statistics=statistics,
            batching=mode,
            num_samples=samples,
        )

    def _rows(self, family: PointFamily) -> tuple[Tensor, Tensor, list[int]]:
        """Return the family's ``(N, M)`` rows, the counterpart's rows, and the face rows."""
        size = int(family.centre.numel())
        if family.kind == "simplex":
            rows = simplex_grid(size, self.simplex_resolution)
            free = [i for i in range(size) if i not in family.fixed]
            on_face = rows[:, free].sum(dim=1) == 0 if free else torch.ones(len(rows), dtype=bool)
            face = [int(i) for i in torch.nonzero(on_face).flatten()]
            return rows, rows[face], face
        t = _positions(self.num_points)
        rows = family.coefficients(t)
        line = torch.zeros_like(rows)
        first, last = family.fixed[0], family.fixed[-1]
        line[:, first] = 1 - t
        line[:, last] = t
        return rows, line, []

    def __repr__(self) -> str:
        return (
            f"Curve(num_points={self.num_points}, simplex_resolution={self.simplex_resolution}, "
            f"bn_recompute_batches={self.bn_recompute_batches}, name={self.name!r})"
        )


def _positions(num_points: int) -> Tensor:
    """Return ``(N,)`` positions ``i / (N - 1)`` in float64 (0.15, not 0.15000000000000002)."""
    return torch.tensor([i / (num_points - 1) for i in range(num_points)], dtype=torch.float64)


def _take(values: SplitValues, rows: Sequence[int]) -> SplitValues:
    index = torch.tensor(list(rows), dtype=torch.long)
    accuracy = None if values.accuracy is None else values.accuracy[index]
    return dataclasses.replace(values, loss=values.loss[index], accuracy=accuracy)


def barrier_over(values: Tensor, coefficients: Tensor) -> float:
    """Return ``max_n [values[n] - coefficients[n] @ vertex_values]``, at least 0.

    The vertex values are those of the rows that are vertices (a single coefficient of 1); the
    rows of a curve are restricted to its fixed ends first.

    Args:
        values: ``(N,)`` values at the rows.
        coefficients: ``(N, V)`` weights of the vertices (each row sums to 1).

    Returns:
        The barrier.
    """
    values = values.double()
    coefficients = coefficients.double()
    vertex_values = torch.zeros(coefficients.shape[1], dtype=torch.float64)
    for v in range(coefficients.shape[1]):
        hits = torch.nonzero((coefficients[:, v] - 1).abs() < 1e-12).flatten()
        require(len(hits) > 0, "coefficients", f"vertex {v}", "a grid that contains every vertex")
        vertex_values[v] = values[hits[0]]
    gap = values - coefficients @ vertex_values
    return max(0.0, float(gap.max()))


def _summaries(values: dict[str, SplitValues], chord: Tensor) -> dict[str, dict | None]:
    has_accuracy = all(v.accuracy is not None for v in values.values())
    loss = {k: v.loss.double().cpu() for k, v in values.items()}
    accuracy = {k: v.accuracy.double().cpu() for k, v in values.items() if v.accuracy is not None}
    error = {k: 1 - v for k, v in accuracy.items()}
    return {
        "loss": {k: v.tolist() for k, v in loss.items()},
        "accuracy": {k: v.tolist() for k, v in accuracy.items()} if has_accuracy else None,
        "loss_barrier": {k: barrier_over(v, chord) for k, v in loss.items()},
        "error_barrier": (
            {k: barrier_over(v, chord) for k, v in error.items()} if has_accuracy else None
        ),
        "loss_max": {k: float(v.max()) for k, v in loss.items()},
        "error_max": {k: float(v.max()) for k, v in error.items()} if has_accuracy else None,
    }


def _skipped(samples: dict[str, int]) -> CurveResult:
    return CurveResult(
        kind="none",
        skipped=SKIPPED,
        t=[],
        coordinates=[],
        fixed=[],
        loss={},
        accuracy=None,
        line_loss={},
        line_accuracy=None,
        face_rows=[],
        loss_barrier={},
        error_barrier=None,
        line_loss_barrier={},
        line_error_barrier=None,
        loss_max={},
        error_max=None,
        line_loss_max={},
        line_error_max=None,
        bn_statistics="none",
        batching="",
        num_samples=samples,
    )
