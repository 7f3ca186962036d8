"""Plot a Hessian eigenvalue density of a `HessianSpectrumResult`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lsuite.errors import ConfigError
from lsuite.plots.curves import save_figure, title
from lsuite.probes.hessian_spectrum import HessianSpectrumResult

_DECADES = 7
"""Decades of density shown below the peak on a log scale (the Gaussian tails underflow)."""


def plot_spectrum(
    result: HessianSpectrumResult,
    path: Path,
    *,
    meta: Mapping[str, Any] | None = None,
    log_scale: bool = True,
) -> Path:
    """Draw the eigenvalue density of one spectrum result and write it atomically.

    Ritz values of each run are marked below the axis; the file is written to a temporary name
    and moved into place, with the mode a plain ``open`` gives (0644 under umask 022).

    Args:
        result: the spectrum result, with ``grid`` and ``density`` (and ``nodes``).
        path: output image path; the suffix picks the format (``.png``, ``.pdf``, ...).
        meta: the record's provenance (``probe``, ``step``, ``epoch`` go in the title).
        log_scale: draw the density on a log axis (the bulk near zero and the outliers both
            show); linear otherwise.

    Returns:
        ``path``.

    Raises:
        ConfigError: when the result has no ``grid``/``density`` of equal length.
    """
    grid = [float(v) for v in result.grid]
    density = [float(v) for v in result.density]
    if not grid or len(grid) != len(density):
        raise ConfigError(
            f"result: got grid of {len(grid)} and density of {len(density)} values; expected a "
            "HessianSpectrumResult with equally long, non-empty grid and density"
        )
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
    for run, nodes in enumerate(result.nodes):
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
    ax.set_title(f"{title(result, meta)}, negative mass {float(result.negative_mass):.3f}")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
