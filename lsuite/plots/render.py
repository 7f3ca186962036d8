"""Render the plots of a probe record, chosen by the record's result kind."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

_PLOTS: dict[str, list[tuple[str, str, str]]] = {
    # kind (result class name) -> [(file suffix, module, function(record, path) -> path)]
    "InterpolationResult": [("interpolation", "lsuite.plots.curves", "plot_interpolation")],
    "LineResult": [("line", "lsuite.plots.curves", "plot_line")],
    "PlaneResult": [
        ("contour", "lsuite.plots.landscape", "plot_contour"),
        ("surface", "lsuite.plots.landscape", "plot_surface"),
    ],
    "HessianSpectrumResult": [("spectrum", "lsuite.plots.spectrum", "plot_spectrum")],
}


def render(record: dict[str, Any], directory: Path) -> list[Path]:
    """Draw the plots for ``record`` into ``directory``; records without plots give ``[]``.

    Files are named ``<probe>_step<step>_<suffix>.png`` (``<probe>_<suffix>.png`` without a
    step); plane records get a contour per split and a surface of the first split. Every file is
    written atomically, so re-rendering (``scripts/replot.py``) replaces plots in place.

    Args:
        record: one probe record (``record["kind"]`` is the result class name).
        directory: the run's ``plots/`` directory.

    Returns:
        The files written.
    """
    plots = _PLOTS.get(str(record.get("kind", "")), [])
    directory = Path(directory)
    stem = str(record.get("probe", record.get("kind", "probe")))
    if "step" in record:
        stem += f"_step{int(record['step']):07d}"
    written: list[Path] = []
    for suffix, module, function in plots:
        plot = getattr(importlib.import_module(module), function)
        if suffix == "contour":
            for split in record.get("loss", {}):
                path = directory / f"{stem}_{suffix}_{split}.png"
                written.append(plot(record, path, split=split))
        else:
            written.append(plot(record, directory / f"{stem}_{suffix}.png"))
    return written
