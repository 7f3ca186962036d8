"""Overlay the curves of every run (interpolation, line, plane slices, spectra) in one figure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure

from lsuite.probes.plane import PlaneResult
from lsuite.report.figures import colours
from lsuite.report.groups import sort_key
from lsuite.report.runs import Run, final_record
from lsuite.report.table import FINISHED
from lsuite.results.curves import curve_table
from lsuite.results.records import ProbeRecord

MAX_PANELS = 6
"""Most curve kinds (splits, directions) drawn per probe; the rest are in the records."""


@dataclass(frozen=True)
class Curves:
    """The curves of one record, by series.

    Attributes:
        x: what the horizontal axis is (``alpha``, ``t``, ``eigenvalue``, ``x``).
        y: what is drawn (``loss``, ``density``).
        series: series name (a split, ``direction/split``, ``x/train``) -> ``(xs, ys)``.
    """

    x: str
    y: str
    series: dict[str, tuple[list[float], list[float | None]]]


def record_curves(record: ProbeRecord) -> Curves | None:
    """Return the curves of an interpolation, line, spectrum or plane record, else None.

    A plane gives its two slices through the centre (``x`` along ``d1`` at ``y = 0`` and ``y``
    along ``d2`` at ``x = 0``), per split.
    """
    result = record.result
    if isinstance(result, PlaneResult):
        return _plane_slices(result)
    table = curve_table(record)
    if table is None:
        return None
    x, y = table.columns.index(table.x), table.columns.index(table.y)
    name = table.columns.index(table.series) if table.series else None
    series: dict[str, tuple[list[float], list[float | None]]] = {}
    for row in table.rows:
        xs, ys = series.setdefault(str(row[name]) if name is not None else table.y, ([], []))
        if row[x] is not None:
            xs.append(row[x])
            ys.append(row[y])
    return Curves(table.x, table.y, series)


def curves_figure(
    runs: Sequence[Run], probe: str, colour_key: str | None, swept: Sequence[str]
) -> Figure | None:
    """Draw the final curves of ``probe`` of every run, one panel per series, overlaid.

    Colour follows the value of ``colour_key`` (one legend entry per value); runs that did not
    complete are dashed.

    Args:
        runs: the sweep's runs.
        probe: the probe's name.
        colour_key: the swept key that colours the curves; None: one colour per run.
        swept: the swept keys (they name a run when ``colour_key`` is None).

    Returns:
        The figure, or None when no run has curves of the probe.
    """
    found = []
    for run in runs:
        record = final_record(run.records.get(probe, []))
        curves = record_curves(record) if record is not None else None
        if curves is not None and curves.series:
            found.append((run, curves))
    if not found:
        return None
    names = list(dict.fromkeys(s for _, c in found for s in c.series))[:MAX_PANELS]
    if colour_key is not None:
        values = sorted(
            {repr(r.hyperparameters.get(colour_key)): r.hyperparameters.get(colour_key)
             for r, _ in found}.values(),
            key=sort_key,
        )  # fmt: skip
        keys = [repr(v) for v in values]
        legend = [f"{colour_key}={v}" for v in values]
    else:
        keys = [run.name for run, _ in found]
        legend = [", ".join(f"{k}={r.hyperparameters.get(k)}" for k in swept) or r.name
                  for r, _ in found]  # fmt: skip
    colour = dict(zip(keys, colours(len(keys)), strict=True))
    label = dict(zip(keys, legend, strict=True))
    columns = min(len(names), 3)
    rows = -(-len(names) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * rows + 0.6), layout="constrained")
    panels = figure.subplots(rows, columns, squeeze=False).ravel()
    for panel, name in zip(panels, names, strict=False):
        shown: set[str] = set()
        for run, curves in found:
            if name not in curves.series:
                continue
            key = repr(run.hyperparameters.get(colour_key)) if colour_key else run.name
            xs, ys = curves.series[name]
            style = "-" if run.status in FINISHED else "--"
            text = label[key] if key not in shown else "_"
            shown.add(key)
            panel.plot(xs, [float("nan") if y is None else y for y in ys], style,
                       color=colour[key], linewidth=1.2, label=text)  # fmt: skip
        panel.set_title(name, fontsize="small")
        panel.set_xlabel(found[0][1].x)
        panel.set_ylabel(found[0][1].y)
    for panel in panels[len(names) :]:
        panel.set_visible(False)
    panels[0].legend(fontsize="x-small", loc="best")
    figure.suptitle(f"{probe}: the final curves of {len(found)} runs")
    return figure


def _plane_slices(result: PlaneResult) -> Curves:
    """The loss along ``d1`` at ``y = 0`` and along ``d2`` at ``x = 0``, per split."""
    i0 = min(range(len(result.x)), key=lambda i: abs(result.x[i]))
    j0 = min(range(len(result.y)), key=lambda j: abs(result.y[j]))
    series: dict[str, tuple[list[float], list[float | None]]] = {}
    for split, grid in result.loss.items():
        series[f"x/{split}"] = (list(result.x), [_finite(grid[i][j0]) for i in range(len(grid))])
        series[f"y/{split}"] = (list(result.y), [_finite(v) for v in grid[i0]])
    return Curves("coordinate", "loss", series)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None
