"""Plot a sweep: final values against each swept hyperparameter, and values over training."""

from __future__ import annotations

import io
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from lsuite.report.runs import Run, Value, measurements
from lsuite.report.table import FINISHED, final_values
from lsuite.results.jsonl import write_atomic


def filename(kind: str, metric: str) -> str:
    """Return the figure's file name, e.g. ``final_hessian_trace.trace.png``."""
    return f"{kind}_{re.sub(r'[^A-Za-z0-9_.=-]+', '.', metric)}.png"


def label(run: Run, keys: Sequence[str]) -> str:
    """Return ``key=value, ...`` of ``keys`` for ``run`` (its name when ``keys`` is empty)."""
    hyperparameters = run.hyperparameters
    return ", ".join(f"{k}={hyperparameters.get(k)}" for k in keys) or run.name


def plot_final(runs: Sequence[Run], metric: str, swept: Sequence[str], path: Path) -> Path | None:
    """Plot ``metric`` at the end of training against each swept key, one line per other values.

    Only completed runs are drawn (a failed run's last value is not the end of training).

    Args:
        runs: the sweep's runs.
        metric: a final metric (``test/acc``) or a probe field (``hessian_trace/trace``).
        swept: the keys the sweep varies; one panel each.
        path: the PNG to write.

    Returns:
        ``path``, or None when no completed run has the metric or nothing was swept.
    """
    finals = {run.name: final_values(run).get(metric) for run in runs if run.status in FINISHED}
    done = [run for run in runs if finals.get(run.name) is not None]
    if not done or not swept:
        return None
    figure = Figure(figsize=(4.4 * len(swept), 4.8), layout="constrained")
    for axes, key in zip(figure.subplots(1, len(swept), squeeze=False)[0], swept, strict=True):
        others = [k for k in swept if k != key]
        lines: dict[str, list[tuple[Value, float]]] = defaultdict(list)
        order: dict[str, tuple[tuple[int, float, str], ...]] = {}
        for run in done:
            name = label(run, others)
            lines[name].append((run.hyperparameters.get(key), finals[run.name]))
            order[name] = tuple(_sort_key(run.hyperparameters.get(k)) for k in others)
        for name in sorted(lines, key=order.__getitem__):
            _draw(axes, lines[name], name if others else None)
        _scale_x(axes, [x for points in lines.values() for x, _ in points])
        axes.set_xlabel(key)
        axes.set_ylabel(metric)
        if others:
            axes.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2))
    figure.suptitle(f"{metric} at the end of training")
    return _save(figure, path)


def plot_training(
    runs: Sequence[Run], metric: str, swept: Sequence[str], path: Path
) -> Path | None:
    """Plot the probe field ``metric`` (``probe/field``) against the step, one line per run.

    Runs that did not complete are dashed.

    Args:
        runs: the sweep's runs.
        metric: ``<probe name>/<field>``.
        swept: the keys the sweep varies (they label the lines).
        path: the PNG to write.

    Returns:
        ``path``, or None when no run has records of the probe field.
    """
    probe, _, field = metric.partition("/")
    figure = Figure(figsize=(9.6, 4.8), layout="constrained")
    axes = figure.subplots()
    colors = _colors(len(runs))
    drawn = 0
    for index, run in enumerate(runs):
        points = []
        for record in run.records.get(probe, []):
            value = measurements(record).get(field)
            if value is not None and record.step is not None:
                points.append((record.step, value))
        if not points:
            continue
        points.sort()
        style = "-" if run.status in FINISHED else "--"
        name = label(run, swept) + ("" if run.status in FINISHED else f" ({run.status})")
        marker = _MARKERS[index % len(_MARKERS)]
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, style, color=colors[index], marker=marker, markersize=3, label=name)
        drawn += 1
    if not drawn:
        return None
    axes.set_xlabel("training step")
    axes.set_ylabel(metric)
    axes.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.suptitle(f"{metric} over training")
    return _save(figure, path)


_MARKERS = ("o", "s", "^", "D", "v")


def _colors(count: int) -> list[tuple[float, ...]]:
    """Return ``count`` distinct colours (tab10 up to 10, tab20 up to 20, then a colour map)."""
    name = "tab10" if count <= 10 else "tab20" if count <= 20 else "viridis"
    colormap = matplotlib.colormaps[name]
    if name == "viridis":
        return [colormap(i / max(count - 1, 1)) for i in range(count)]
    return [colormap(i) for i in range(count)]


def _draw(axes: Axes, points: list[tuple[Value, float]], name: str | None) -> None:
    numeric = all(_is_number(x) for x, _ in points)
    points = sorted(points, key=lambda p: _sort_key(p[0]))
    xs: list[float | str] = [float(x) if numeric else str(x) for x, _ in points]  # type: ignore[arg-type]
    axes.plot(xs, [y for _, y in points], marker="o", label=name)


def _scale_x(axes: Axes, xs: list[Value]) -> None:
    """Use a log axis for positive numbers spanning a factor of 10 or more (symlog with a 0)."""
    if not xs or not all(_is_number(x) for x in xs):
        return
    values = sorted({float(x) for x in xs})  # type: ignore[arg-type]
    positive = [v for v in values if v > 0]
    if len(positive) < 2 or positive[-1] / positive[0] < 10 or values[0] < 0:
        return
    if values[0] == 0:
        axes.set_xscale("symlog", linthresh=positive[0])
    else:
        axes.set_xscale("log")
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xticks(values, [f"{v:g}" for v in values])


def _sort_key(value: Value) -> tuple[int, float, str]:
    """Order numbers by value, before any text."""
    if _is_number(value):
        return (0, float(value), "")  # type: ignore[arg-type]
    return (1, 0.0, str(value))


def _is_number(value: Value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _save(figure: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return write_atomic(path, buffer.getvalue())
