"""Draw a sweep's figures: final values against the x key, and probe values over training."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from lsuite.report.groups import identity, is_categorical, is_number, sort_key
from lsuite.report.runs import Run, Value, measurements
from lsuite.report.summary import FieldPoints
from lsuite.report.table import FINISHED
from lsuite.results.jsonl import write_atomic

_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def filename(kind: str, metric: str) -> str:
    """Return the figure's file name, e.g. ``final_hessian_trace.trace.png``."""
    return f"{kind}_{re.sub(r'[^A-Za-z0-9_.=-]+', '.', metric)}.png"


def label(run: Run, keys: Sequence[str]) -> str:
    """Return ``key=value, ...`` of ``keys`` for ``run`` (its name when ``keys`` is empty)."""
    hyperparameters = run.hyperparameters
    return ", ".join(f"{k}={hyperparameters.get(k)}" for k in keys) or run.name


def final_figure(points: FieldPoints, categories: Sequence[Value] = ()) -> Figure:
    """Draw a field's final value against the x key: mean and standard-error bars per line.

    A numeric x key draws lines (on a log axis when its positive values span a factor of 10 or
    more). A categorical one (text such as ``sgd``/``sam``, booleans) draws grouped points: the
    categories at integer positions, each line's points shifted a little sideways, no line
    joining the categories.

    Args:
        points: what to draw (`lsuite.report.summary.field_points`).
        categories: every value of the x key in the sweep, so that all figures place them alike;
            by default the values drawn.

    Returns:
        The figure (not saved).
    """
    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    axes = figure.subplots()
    xs = [x for line in points.lines for x, _ in line.points]
    categorical = is_categorical(list(categories) or xs)
    if categorical:
        names = sorted({repr(v): v for v in [*categories, *xs]}.values(), key=sort_key)
        position = {repr(v): i for i, v in enumerate(names)}
    count = len(points.lines)
    width = 0.6 / max(count, 1)
    colors = colours(count)
    for index, line in enumerate(points.lines):
        ys = [stat.mean for _, stat in line.points]
        errors = [0.0 if math.isnan(stat.se) else stat.se for _, stat in line.points]
        style = {"color": colors[index], "marker": _MARKERS[index % len(_MARKERS)], "capsize": 3}
        name = line.label or None
        if categorical:
            shift = (index - (count - 1) / 2) * width
            at = [position[repr(x)] + shift for x, _ in line.points]
            axes.errorbar(at, ys, yerr=errors, linestyle="none", label=name, **style)
        else:
            at = [float(x) for x, _ in line.points]  # type: ignore[arg-type]
            axes.errorbar(at, ys, yerr=errors, linestyle="-", label=name, **style)
    if categorical:
        axes.set_xticks(range(len(names)), [str(v) for v in names])
        axes.set_xlim(-0.5, len(names) - 0.5)
    else:
        scale_x(axes, xs)
    axes.set_xlabel(points.x)
    axes.set_ylabel(points.field)
    if any(line.label for line in points.lines):
        axes.legend(fontsize="x-small", loc="best")
    n = sorted({stat.n for line in points.lines for _, stat in line.points})
    runs = f"n={n[0]}" if len(n) == 1 else f"n={n[0]}-{n[-1]}"
    bars = any(not math.isnan(s.se) for line in points.lines for _, s in line.points)
    note = f"{runs} runs a point" + ("; bars: standard error" if bars else "")
    figure.suptitle(f"{points.field} at the end of training ({note})", fontsize="medium")
    return figure


def training_figure(
    runs: Sequence[Run], metric: str, swept: Sequence[str], colour_keys: Sequence[str]
) -> Figure | None:
    """Draw the probe field ``metric`` (``probe/field``) against the step, all runs overlaid.

    Runs of one configuration (equal ``colour_keys``, e.g. differing only in seeds) share a
    colour and a label; runs that did not complete are dashed and labelled apart.

    Args:
        runs: the sweep's runs.
        metric: ``<probe name>/<field>``.
        swept: the keys that vary; they label the lines when ``colour_keys`` is empty.
        colour_keys: the keys whose values choose the colour and label (seeds left out).

    Returns:
        The figure, or None when no run has two records of the probe field.
    """
    probe, _, field = metric.partition("/")
    series = []
    for run in runs:
        points = []
        for record in run.records.get(probe, []):
            value = measurements(record).get(field)
            if value is not None and record.step is not None:
                points.append((record.step, value))
        if points:
            series.append((run, sorted(points)))
    if not any(len(points) > 1 for _, points in series):
        return None
    figure = Figure(figsize=(8.4, 4.4), layout="constrained")
    axes = figure.subplots()
    groups = sorted(
        {identity(run, colour_keys): run for run, _ in series}.items(),
        key=lambda item: tuple(sort_key(item[1].hyperparameters.get(k)) for k in colour_keys),
    )
    colors = dict(zip((g for g, _ in groups), colours(len(groups)), strict=True))
    labelled: set[tuple[str, ...]] = set()
    for run, points in series:
        group = identity(run, colour_keys)
        name = label(run, colour_keys) if colour_keys else label(run, swept)
        if run.status not in FINISHED:
            name += f" ({run.status})"
        elif group in labelled:
            name = "_"  # a seed of a configuration already in the legend
        labelled.add(group)
        xs, ys = zip(*points, strict=True)
        style = "-" if run.status in FINISHED else "--"
        axes.plot(xs, ys, style, color=colors[group], marker="o", markersize=3, label=name)
    axes.set_xlabel("training step")
    axes.set_ylabel(metric)
    axes.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.suptitle(f"{metric} over training")
    return figure


def colours(count: int) -> list[tuple[float, ...]]:
    """Return ``count`` distinct colours (tab10 up to 10, tab20 up to 20, then a colour map)."""
    name = "tab10" if count <= 10 else "tab20" if count <= 20 else "viridis"
    colormap = matplotlib.colormaps[name]
    if name == "viridis":
        return [colormap(i / max(count - 1, 1)) for i in range(count)]
    return [colormap(i) for i in range(count)]


def scale_x(axes: Axes, xs: Sequence[Value]) -> None:
    """Use a log axis for positive numbers spanning a factor of 10 or more (symlog with a 0)."""
    if not xs or not all(is_number(x) for x in xs):
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


def save(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as a PNG at ``path`` (atomically) and return ``path``."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return write_atomic(path, buffer.getvalue())
