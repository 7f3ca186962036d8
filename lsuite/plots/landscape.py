"""Plot 2-D loss landscapes of plane results: labelled contours and 3-D surfaces."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure

from lsuite.errors import ConfigError
from lsuite.plots.curves import floats, save_figure, title
from lsuite.probes.plane import PlaneResult

Metric = Literal["loss", "accuracy"]

LOG_RATIO = 100.0
"""``log_scale=None`` picks a log scale when the largest positive loss exceeds the smallest by
more than this factor (e.g. eval-mode BatchNorm planes, whose corners reach 1e8)."""


def plot_contour(
    result: PlaneResult,
    path: Path,
    *,
    meta: Mapping[str, Any] | None = None,
    split: str | None = None,
    metric: Metric = "loss",
    log_scale: bool | None = None,
    levels: int = 20,
) -> Path:
    """Draw filled contours with labelled levels, a colour bar and the record's marks.

    Marks: the trajectory (line with dots, from its first point to the centre), the named
    markers (``center``, the three ``points``) and the grid minimum. Written atomically.

    Args:
        result: the plane result.
        path: output image; the suffix picks the format.
        meta: the record's provenance (``probe``, ``step``, ``epoch`` go in the title).
        split: the split to draw; the result's first split when None.
        metric: ``"loss"`` or ``"accuracy"``.
        log_scale: draw ``log10`` of the values; None decides by `LOG_RATIO` (loss only).
        levels: number of contour levels.

    Returns:
        ``path``.
    """
    x, y, z, split = grid(result, split, metric)
    log = _use_log(z, metric, log_scale)
    shown = _log10(z) if log else z
    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.subplots()
    finite = shown[np.isfinite(shown)]
    if finite.size and float(finite.max()) > float(finite.min()):
        bounds = np.linspace(float(finite.min()), float(finite.max()), levels + 1)
        filled = ax.contourf(x, y, shown.T, levels=bounds, cmap="viridis")
        lines = ax.contour(x, y, shown.T, levels=bounds[::2], colors="k", linewidths=0.5)
        ax.clabel(lines, inline=True, fontsize=7, fmt="%.3g")
        colorbar = fig.colorbar(filled, ax=ax)
        colorbar.set_label(f"log10 {metric}" if log else metric)
    _overlay(ax, result, split, metric)
    ax.set_xlabel(f"d1 ({result.normalization})")
    ax.set_ylabel(f"d2 ({result.normalization})")
    ax.set_aspect("equal", adjustable="box")
    ax.set_title(f"{title(result, meta)} | {result.directions} | {split} {metric}")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_surface(
    result: PlaneResult,
    path: Path,
    *,
    meta: Mapping[str, Any] | None = None,
    split: str | None = None,
    metric: Metric = "loss",
    log_scale: bool | None = None,
) -> Path:
    """Draw the grid as a 3-D surface. Written atomically.

    Args:
        result: the plane result.
        path: output image; the suffix picks the format.
        meta: the record's provenance (``probe``, ``step``, ``epoch`` go in the title).
        split: the split to draw; the result's first split when None.
        metric: ``"loss"`` or ``"accuracy"``.
        log_scale: draw ``log10`` of the values; None decides by `LOG_RATIO` (loss only).

    Returns:
        ``path``.
    """
    x, y, z, split = grid(result, split, metric)
    log = _use_log(z, metric, log_scale)
    shown = _log10(z) if log else z
    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot(projection="3d")
    xx, yy = np.meshgrid(x, y)  # (R, R), rows along y
    ax.plot_surface(xx, yy, np.ma.masked_invalid(shown.T), cmap="viridis", linewidth=0)
    ax.set_xlabel("d1")
    ax.set_ylabel("d2")
    ax.set_zlabel(f"log10 {metric}" if log else metric)
    ax.set_title(f"{title(result, meta)} | {split} {metric}")
    return save_figure(fig, path)


def grid(
    result: PlaneResult, split: str | None, metric: Metric
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Return ``(x (R,), y (R,), values (R, R), split)`` with ``values[i, j]`` at ``(x[i], y[j])``.

    Args:
        result: a plane result.
        split: the split; the result's first when None.
        metric: ``"loss"`` or ``"accuracy"``.

    Returns:
        Coordinates, values (non-finite entries as ``nan``/``inf``) and the split drawn.

    Raises:
        ConfigError: when the result lacks the split or the metric.
    """
    table = getattr(result, metric, None) if metric in ("loss", "accuracy") else None
    if not table:
        raise ConfigError(f"metric: got {metric!r}; the result has no {metric} values")
    split = next(iter(table)) if split is None else split
    if split not in table:
        raise ConfigError(f"split: got {split!r}; expected one of {sorted(table)}")
    values = np.array([floats(row) for row in table[split]], dtype=float)
    return np.array(floats(result.x)), np.array(floats(result.y)), values, split


def _use_log(z: np.ndarray, metric: Metric, log_scale: bool | None) -> bool:
    if log_scale is not None:
        return log_scale
    positive = z[np.isfinite(z) & (z > 0)]
    if metric != "loss" or positive.size == 0 or positive.size < np.isfinite(z).sum():
        return False
    return float(positive.max()) > LOG_RATIO * float(positive.min())


def _log10(z: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(z > 0, np.log10(np.where(z > 0, z, 1.0)), -math.inf)


def _overlay(ax: Any, result: PlaneResult, split: str, metric: Metric) -> None:
    path = result.trajectory
    if path:
        points = np.array([floats(p) for p in path] + [[0.0, 0.0]])
        ax.plot(points[:, 0], points[:, 1], "-o", color="w", markersize=3, linewidth=1.0)
    for name, (mx, my) in result.markers.items():
        label = Path(name).name if "/" in name else name  # a checkpoint path: its file name
        ax.plot([float(mx)], [float(my)], "o", color="red", markersize=6)
        ax.annotate(label, (float(mx), float(my)), textcoords="offset points", xytext=(4, 4))
    best = result.min_location.get(split) if metric == "loss" else None
    if best is not None:
        ax.plot([float(best[0])], [float(best[1])], "*", color="orange", markersize=10)
