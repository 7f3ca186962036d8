"""Plot a Hessian eigenvalue density from a saved `HessianSpectrumResult` record."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lsuite.errors import ConfigError

_DECADES = 7
"""Decades of density shown below the peak on a log scale (the Gaussian tails underflow)."""


def plot_spectrum(record: dict[str, Any], path: Path, *, log_scale: bool = True) -> Path:
    """Draw the eigenvalue density of one spectrum record and write it atomically.

    The record is ``HessianSpectrumResult.to_dict()``, optionally with ``step``, ``epoch`` and
    ``name`` added by the callback (shown in the title). Ritz values of each run are marked
    below the axis; the file is written to a temporary name and moved into place.

    Args:
        record: a saved spectrum record with ``grid`` and ``density`` (and ``nodes``).
        path: output image path; the suffix picks the format (``.png``, ``.pdf``, ...).
        log_scale: draw the density on a log axis (the bulk near zero and the outliers both
            show); linear otherwise.

    Returns:
        ``path``.

    Raises:
        ConfigError: when the record has no ``grid``/``density`` of equal length.
    """
    grid = [float(v) for v in record.get("grid", [])]
    density = [float(v) for v in record.get("density", [])]
    if not grid or len(grid) != len(density):
        raise ConfigError(
            f"record: got grid of {len(grid)} and density of {len(density)} values; expected a "
            "HessianSpectrum record with equally long, non-empty grid and density"
        )
    path = Path(path)
    # A bare Figure (no pyplot): no global backend or figure registry is touched.
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.subplots()
    peak = max(max(density), 1e-300)
    floor = peak * 10.0**-_DECADES
    shown = [max(d, floor) for d in density] if log_scale else density
    ax.plot(grid, shown, color="C0", linewidth=1.2)
    if log_scale:
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor, top=peak * 2)
    for run, nodes in enumerate(record.get("nodes", [])):
        ax.plot(
            [float(n) for n in nodes],
            [0.0] * len(nodes),
            "|",
            color=f"C{1 + run % 8}",
            markersize=6,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
        )
    ax.axvline(0.0, color="0.6", linewidth=0.6, linestyle="--")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density" + (" (log scale)" if log_scale else ""))
    ax.set_title(_title(record))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _title(record: dict[str, Any]) -> str:
    parts = [str(record.get("name", "Hessian spectrum"))]
    for key in ("epoch", "step"):
        if record.get(key) is not None:
            parts.append(f"{key} {record[key]}")
    if "negative_mass" in record:
        parts.append(f"negative mass {float(record['negative_mass']):.3f}")
    return ", ".join(parts)
