"""Compute what a summary figure draws: a field's mean and standard error per configuration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lsuite.report.groups import Stat, aggregate, axes, group_runs, sort_key
from lsuite.report.runs import Run, Value
from lsuite.report.table import FINISHED


@dataclass(frozen=True)
class Line:
    """One line of a summary figure: the runs sharing the values of the other swept keys.

    Attributes:
        label: ``key=value, ...`` of the other keys ("" when there are none).
        points: ``(x value, statistic)`` in the order of the x values.
    """

    label: str
    points: list[tuple[Value, Stat]]


@dataclass(frozen=True)
class FieldPoints:
    """A final value against the x key, one line per value of the other swept keys.

    Attributes:
        field: ``test/acc`` or ``<probe>/<field>``.
        x: the key on the x axis.
        others: the other keys that vary among the runs with the field (one line each).
        lines: the lines, ordered by the others' values.
    """

    field: str
    x: str
    others: list[str]
    lines: list[Line]


def field_points(
    runs: Sequence[Run],
    field: str,
    x: str,
    finals: Mapping[str, Mapping[str, float]],
    stderr: str | None = None,
) -> FieldPoints | None:
    """Return ``field`` at the end of training against ``x``, averaged over seeds.

    Only completed runs count (a failed run's last value is not the end of training). The keys
    that vary among the runs having the field (seeds left out) split the runs into lines, so a
    probe that only some runs of a sweep over ``probes`` measured gets no line per ``probes``
    value.

    Args:
        runs: the sweep's runs.
        field: the final value to draw.
        x: the key on the x axis.
        finals: run name -> its final values (`lsuite.report.table.final_values`).
        stderr: the field holding the probe's own standard error of ``field``, if any.

    Returns:
        The points, or None when no completed run has the field.
    """
    done = [
        run
        for run in runs
        if run.status in FINISHED and finals.get(run.name, {}).get(field) is not None
    ]
    if not done:
        return None
    others = [key for key in axes(done) if key != x]
    lines: dict[str, list[tuple[Value, Stat]]] = {}
    order: dict[str, tuple[Any, ...]] = {}
    for group in group_runs(done, [x, *others]):
        values = [finals[run.name][field] for run in group]
        errors = [finals[run.name].get(stderr) if stderr else None for run in group]
        stat = aggregate(values, errors)
        if stat is None:
            continue
        first = group[0].hyperparameters
        label = ", ".join(f"{k}={first.get(k)}" for k in others)
        lines.setdefault(label, []).append((first.get(x), stat))
        order[label] = tuple(sort_key(first.get(k)) for k in others)
    if not lines:
        return None
    return FieldPoints(
        field=field,
        x=x,
        others=others,
        lines=[
            Line(label, sorted(lines[label], key=lambda p: sort_key(p[0])))
            for label in sorted(lines, key=order.__getitem__)
        ],
    )


def points_rows(points: FieldPoints, figure: str) -> list[dict[str, Any]]:
    """Return one row per drawn point: figure, field, x key and value, line, mean, se, std, n."""
    return [
        {
            "figure": figure,
            "field": points.field,
            "x_key": points.x,
            "x": x,
            "line": line.label,
            "mean": stat.mean,
            "se": stat.se,
            "std": stat.std,
            "n": stat.n,
        }
        for line in points.lines
        for x, stat in line.points
    ]
