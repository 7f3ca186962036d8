"""Render the plots of a probe record, chosen by the class of its result."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lsuite.plots.curve_family import plot_curve
from lsuite.plots.curves import plot_interpolation, plot_line
from lsuite.plots.ensemble import plot_ensemble
from lsuite.plots.landscape import plot_contour, plot_surface
from lsuite.plots.spectrum import plot_spectrum
from lsuite.probes.base import ProbeResult
from lsuite.probes.curve import CurveResult
from lsuite.probes.ensemble import EnsembleResult
from lsuite.probes.hessian_spectrum import HessianSpectrumResult
from lsuite.probes.interpolation import InterpolationResult
from lsuite.probes.line import LineResult
from lsuite.probes.plane import PlaneResult
from lsuite.results.records import ProbeRecord, read_record

Plot = Callable[..., Path]
"""``plot(result, path, *, meta=...) -> path``."""

PLOTS: dict[type[ProbeResult], list[tuple[str, Plot]]] = {
    InterpolationResult: [("interpolation", plot_interpolation)],
    LineResult: [("line", plot_line)],
    PlaneResult: [("contour", plot_contour), ("surface", plot_surface)],
    HessianSpectrumResult: [("spectrum", plot_spectrum)],
    EnsembleResult: [("ensemble", plot_ensemble)],
    CurveResult: [("curve", plot_curve)],
}
"""Result class -> ``(file suffix, plot)``; a subclass of a listed class gets its plots."""


def render(record: ProbeRecord | Mapping[str, Any], directory: Path) -> list[Path]:
    """Draw the plots for ``record`` into ``directory``; records without plots give ``[]``.

    Files are named ``<probe>_step<step>_<suffix>.png`` (``<probe>_<suffix>.png`` without a
    step); plane results get a contour per split and a surface of the first split. Every file
    is written atomically, so re-rendering (``scripts/replot.py``) replaces plots in place.
    Failure records have no plots.

    Args:
        record: a `ProbeRecord`, or a raw record (one parsed JSON line, schema 1 or 2).
        directory: the run's ``plots/`` directory.

    Returns:
        The files written.
    """
    if not isinstance(record, ProbeRecord):
        record = read_record(record)
    result, meta = record.result, record.meta
    plots = plots_for(result) if result is not None else []
    if getattr(result, "skipped", None):  # a probe that had nothing to measure (curve)
        plots = []
    directory = Path(directory)
    stem = str(meta.get("probe", type(result).__name__))
    if meta.get("step") is not None:
        stem += f"_step{int(meta['step']):07d}"
    written: list[Path] = []
    for suffix, plot in plots:
        if isinstance(result, PlaneResult) and suffix == "contour":
            for split in result.loss:
                path = directory / f"{stem}_{suffix}_{split}.png"
                written.append(plot(result, path, meta=meta, split=split))
        else:
            written.append(plot(result, directory / f"{stem}_{suffix}.png", meta=meta))
    return written


def plots_for(result: ProbeResult) -> list[tuple[str, Plot]]:
    """Return the ``(file suffix, plot)`` pairs of ``result``'s class (or a base class of it).

    Args:
        result: a probe result.
    """
    for cls in type(result).__mro__:
        if cls in PLOTS:
            return PLOTS[cls]
    return []
