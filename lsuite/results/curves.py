"""Turn curve-valued probe records (interpolation, line, spectrum) into long tables for loggers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


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


def curve_table(record: dict[str, Any]) -> CurveTable | None:
    """Return the curves of an interpolation, line or spectrum record as a table, else None.

    Args:
        record: a probe record (``record["kind"]`` is the result class name, e.g.
            ``"InterpolationResult"``).

    Returns:
        The table, or None for records of other kinds.
    """
    build = {
        "InterpolationResult": _interpolation,
        "LineResult": _line,
        "HessianSpectrumResult": _spectrum,
    }.get(str(record.get("kind")))
    if build is None:
        return None
    title = f"{record.get('probe', record['kind'])} at step {record.get('step', '?')}"
    return build(record, title)


def _interpolation(record: dict[str, Any], title: str) -> CurveTable:
    """Loss and accuracy at each ``alpha`` (0: start, 1: the measured weights), per split."""
    accuracy = record.get("accuracy") or {}
    rows = []
    for split, losses in record["loss"].items():
        accuracies = accuracy.get(split) or [None] * len(losses)
        for alpha, loss, acc in zip(record["alpha"], losses, accuracies, strict=True):
            rows.append([_number(alpha), split, _number(loss), _number(acc)])
    return CurveTable(["alpha", "split", "loss", "accuracy"], rows, "alpha", "loss", "split", title)


def _line(record: dict[str, Any], title: str) -> CurveTable:
    """Loss and accuracy at each ``t`` along each direction, per split (series ``dir/split``)."""
    accuracy = record.get("accuracy") or {}
    rows = []
    for direction in record["directions"]:
        for split, losses in record["loss"][direction].items():
            accuracies = (accuracy.get(direction) or {}).get(split) or [None] * len(losses)
            for t, loss, acc in zip(record["t"], losses, accuracies, strict=True):
                series = f"{direction}/{split}"
                row = [_number(t), direction, split, series, _number(loss), _number(acc)]
                rows.append(row)
    columns = ["t", "direction", "split", "series", "loss", "accuracy"]
    return CurveTable(columns, rows, "t", "loss", "series", title)


def _spectrum(record: dict[str, Any], title: str) -> CurveTable:
    """The broadened eigenvalue density on its grid."""
    rows = [
        [_number(x), _number(d)] for x, d in zip(record["grid"], record["density"], strict=True)
    ]
    return CurveTable(["eigenvalue", "density"], rows, "eigenvalue", "density", None, title)


def _number(value: Any) -> float | None:
    """Return a finite float, or None (records write NaN and infinities as strings)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
