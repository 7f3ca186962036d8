"""Turn curve-valued probe records (interpolation, line, spectrum) into long tables for loggers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lsuite.probes.hessian_spectrum import HessianSpectrumResult
from lsuite.probes.interpolation import InterpolationResult
from lsuite.probes.line import LineResult
from lsuite.results.records import ProbeRecord, read_record


@dataclass(frozen=True)
class CurveTable:
    """A long table of one record's curves, and how to draw it as a line plot.

    Attributes:
        columns: column names; ``x``, ``y`` and ``series`` are among them.
        rows: one row per point and curve; non-finite values are None.
        x: the column along the curve (``alpha``, ``t``, ``eigenvalue``).
        y: the column drawn (``loss``, ``density``).
        series: the column that tells curves apart (one line each), or None for one curve.
        title: a title naming the probe and step.
    """

    columns: list[str]
    rows: list[list[Any]]
    x: str
    y: str
    series: str | None
    title: str


def curve_table(record: ProbeRecord | Mapping[str, Any]) -> CurveTable | None:
    """Return the curves of an interpolation, line or spectrum record as a table, else None.

    Args:
        record: a `ProbeRecord`, or a raw record (one parsed JSON line, schema 1 or 2).

    Returns:
        The table, or None for other results and for failure records.
    """
    if not isinstance(record, ProbeRecord):
        record = read_record(record)
    result = record.result
    title = (
        f"{record.meta.get('probe', type(result).__name__)} at step {record.meta.get('step', '?')}"
    )
    if isinstance(result, InterpolationResult):
        return _interpolation(result, title)
    if isinstance(result, LineResult):
        return _line(result, title)
    if isinstance(result, HessianSpectrumResult):
        return _spectrum(result, title)
    return None


def _interpolation(result: InterpolationResult, title: str) -> CurveTable:
    """Loss and accuracy at each ``alpha`` (0: start, 1: the measured weights), per split."""
    accuracy = result.accuracy or {}
    rows = []
    for split, losses in result.loss.items():
        accuracies = accuracy.get(split) or [None] * len(losses)
        for alpha, loss, acc in zip(result.alpha, losses, accuracies, strict=True):
            rows.append([_number(alpha), split, _number(loss), _number(acc)])
    return CurveTable(["alpha", "split", "loss", "accuracy"], rows, "alpha", "loss", "split", title)


def _line(result: LineResult, title: str) -> CurveTable:
    """Loss and accuracy at each ``t`` along each direction, per split (series ``dir/split``)."""
    accuracy = result.accuracy or {}
    rows = []
    for direction in result.directions:
        for split, losses in result.loss[direction].items():
            accuracies = (accuracy.get(direction) or {}).get(split) or [None] * len(losses)
            for t, loss, acc in zip(result.t, losses, accuracies, strict=True):
                series = f"{direction}/{split}"
                row = [_number(t), direction, split, series, _number(loss), _number(acc)]
                rows.append(row)
    columns = ["t", "direction", "split", "series", "loss", "accuracy"]
    return CurveTable(columns, rows, "t", "loss", "series", title)


def _spectrum(result: HessianSpectrumResult, title: str) -> CurveTable:
    """The broadened eigenvalue density on its grid."""
    rows = [[_number(x), _number(d)] for x, d in zip(result.grid, result.density, strict=True)]
    return CurveTable(["eigenvalue", "density"], rows, "eigenvalue", "density", None, title)


def _number(value: Any) -> float | None:
    """Return a finite float, or None for None, NaN and infinities."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
