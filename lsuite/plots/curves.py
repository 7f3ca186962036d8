"""Plot 1-D loss curves of results: interpolation paths and lines through the weights."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lsuite.probes.interpolation import InterpolationResult
from lsuite.probes.line import LineResult
from lsuite.results.jsonl import write_atomic

_SPLIT_STYLE = {"train": "-", "val": "--"}


def plot_interpolation(
    result: InterpolationResult,
    path: Path,
    *,
    meta: Mapping[str, Any] | None = None,
    log_scale: bool = False,
) -> Path:
    """Draw loss (and accuracy) along ``alpha`` for every split of an interpolation record.

    The chord between the end values and the barrier location are marked; ``alpha = 0`` is the
    start and ``alpha = 1`` the measured weights. The file is written atomically.

    Args:
        result: the interpolation result.
        path: output image; the suffix picks the format.
        meta: the record's provenance (``probe``, ``step``, ``epoch`` go in the title).
        log_scale: draw the loss on a log axis.

    Returns:
        ``path``.
    """
    alpha = [float(a) for a in result.alpha]
    accuracy = result.accuracy
    fig = Figure(figsize=(10.0 if accuracy else 5.5, 4.0))
    axes = fig.subplots(1, 2 if accuracy else 1, squeeze=False)[0]
    kinds = list(getattr(result, "curves", []) or [])
    for i, (split, curve) in enumerate(result.loss.items()):
        values = floats(curve)
        color = "C0" if kinds else f"C{i}"  # with aligned curves: one colour per curve kind
        label = f"{split} naive" if kinds else split
        axes[0].plot(alpha, values, _SPLIT_STYLE.get(split, "-"), color=color, label=label)
        ends = [values[alpha.index(0.0)], values[alpha.index(1.0)]]
        axes[0].plot([0.0, 1.0], ends, ":", color=color, linewidth=0.8)
        where = result.loss_barrier_alpha.get(split)
        if where is not None:
            height = values[alpha.index(float(where))] if float(where) in alpha else None
            if height is not None:
                axes[0].plot([float(where)], [height], "v", color=color)
        if accuracy:
            axes[1].plot(alpha, floats(accuracy[split]), _SPLIT_STYLE.get(split, "-"), color=color)
    _overlay(axes, alpha, result, kinds, offset=1)
    for ax in axes:
        ax.axvline(0.0, color="0.7", linewidth=0.6)
        ax.axvline(1.0, color="0.7", linewidth=0.6)
        ax.set_xlabel("alpha (0: start, 1: end)")
    axes[0].set_ylabel("loss")
    if log_scale:
        axes[0].set_yscale("log")
    axes[0].legend()
    if accuracy:
        axes[1].set_ylabel("accuracy")
    barriers = ", ".join(f"{k} {v:.3g}" for k, v in result.loss_barrier.items())
    for kind in kinds[:3]:
        first = next(iter(result.aligned_loss_barrier.get(kind, {}).values()), None)
        if first is not None:
            barriers += f"; {kind} {first:.3g}"
    fig.suptitle(f"{title(result, meta)} | start: {result.start} | barrier: {barriers}")
    fig.tight_layout()
    return save_figure(fig, path)


def _overlay(
    axes: Sequence[Any],
    alpha: list[float],
    result: InterpolationResult,
    kinds: list[str],
    offset: int,
) -> None:
    """Draw the aligned / repaired curves of ``result`` over the naive ones (one colour a kind)."""
    for k, kind in enumerate(kinds):
        color = f"C{offset + k}"
        for split, curve in result.aligned_loss.get(kind, {}).items():
            style = _SPLIT_STYLE.get(split, "-")
            axes[0].plot(alpha, floats(curve), style, color=color, label=f"{split} {kind}")
            accuracy = result.aligned_accuracy.get(kind, {}).get(split)
            if len(axes) > 1 and accuracy is not None:
                axes[1].plot(alpha, floats(accuracy), style, color=color)


def plot_line(
    result: LineResult,
    path: Path,
    *,
    meta: Mapping[str, Any] | None = None,
    log_scale: bool = False,
) -> Path:
    """Draw the loss along each direction of a line record, one panel per direction.

    Each panel shows every split, the level ``loss(0) + delta`` that defines the width, the
    width crossings and the named markers (``origin``, ``init``). Written atomically.

    Args:
        result: the line result.
        path: output image; the suffix picks the format.
        meta: the record's provenance (``probe``, ``step``, ``epoch`` go in the title).
        log_scale: draw the loss on a log axis.

    Returns:
        ``path``.
    """
    t = [float(v) for v in result.t]
    names = list(result.directions)
    fig = Figure(figsize=(3.6 * len(names) + 0.8, 3.6))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    center = t.index(0.0)
    delta = float(result.delta)
    for ax, name in zip(axes, names, strict=True):
        for i, (split, curve) in enumerate(result.loss[name].items()):
            values = floats(curve)
            color = f"C{i}"
            ax.plot(t, values, _SPLIT_STYLE.get(split, "-"), color=color, label=split)
            ax.axhline(values[center] + delta, color=color, linewidth=0.6, linestyle=":")
            for widths, sign in ((result.width_minus, -1.0), (result.width_plus, 1.0)):
                width = widths.get(name, {}).get(split)
                if width is not None:
                    ax.plot([sign * float(width)], [values[center] + delta], "|", color=color)
        for label, where in result.markers.get(name, {}).items():
            if t[0] <= float(where) <= t[-1]:
                ax.axvline(float(where), color="0.5", linewidth=0.8, linestyle="--")
                ax.annotate(label, (float(where), 0.95), xycoords=("data", "axes fraction"))
        ax.set_title(name)
        ax.set_xlabel(f"t (units of {'||w||' if result.scale == 'model' else '1'})")
        if log_scale:
            ax.set_yscale("log")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    fig.suptitle(f"{title(result, meta)} | delta {delta:g}")
    fig.tight_layout()
    return save_figure(fig, path)


def floats(values: Sequence[Any]) -> list[float]:
    """Return values as floats (None becomes nan; ``"nan"``/``"inf"`` strings are read too)."""
    return [math.nan if v is None else float(v) for v in values]


def title(result: object, meta: Mapping[str, Any] | None) -> str:
    """Return ``"<probe> step S (epoch E)"`` from whatever of those ``meta`` has.

    Args:
        result: the result drawn (its class names the plot when ``meta`` has no ``probe``).
        meta: the record's provenance, or None.
    """
    meta = meta or {}
    parts = [str(meta.get("probe", type(result).__name__))]
    if meta.get("step") is not None:
        parts.append(f"step {meta['step']}")
    if meta.get("epoch") is not None:
        parts.append(f"(epoch {meta['epoch']})")
    return " ".join(parts)


def save_figure(fig: Figure, path: Path, *, dpi: int = 110) -> Path:
    """Render ``fig`` and write it to ``path`` atomically (temporary name, then ``os.replace``).

    Args:
        fig: the figure.
        path: destination; the suffix picks the format (``png`` when there is none).
        dpi: resolution of raster formats.

    Returns:
        ``path``.
    """
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    write_atomic(path, buffer.getvalue())
    return path
