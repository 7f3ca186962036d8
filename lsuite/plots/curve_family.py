"""Plot a curve probe's record: the curve (or simplex) overlaid on the straight line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lsuite.plots.curves import floats, save_figure, title
from lsuite.probes.curve import CurveResult

_SPLIT_STYLE = {"train": "-", "val": "--"}


def plot_curve(result: CurveResult, path: Path, *, meta: Mapping[str, Any] | None = None) -> Path:
    """Draw loss and error over a curve's ``t`` (or a simplex's grid) next to the line's.

    A curve: loss (left) and error (right) against ``t``, the curve in colour ``C0`` and the
    straight line between its ends in ``C1``, one line style per split. A simplex: the same
    values against the grid row, the face of the fixed vertices marked. Written atomically.

    Args:
        result: a curve result (not skipped).
        path: output image.
        meta: the record's provenance (for the title).

    Returns:
        ``path``.
    """
    accuracy = result.accuracy
    fig = Figure(figsize=(10.0 if accuracy else 5.5, 4.0))
    axes = fig.subplots(1, 2 if accuracy else 1, squeeze=False)[0]
    simplex = result.kind == "simplex"
    x = list(range(len(result.coordinates))) if simplex else floats(result.t)
    line_x = [x[i] for i in result.face_rows] if simplex else x
    line_label = "face of fixed vertices" if simplex else "line"
    for split in result.loss:
        style = _SPLIT_STYLE.get(split, "-")
        axes[0].plot(
            x, floats(result.loss[split]), style, color="C0", label=f"{split} {result.kind}"
        )
        axes[0].plot(
            line_x,
            floats(result.line_loss[split]),
            style,
            color="C1",
            label=f"{split} {line_label}",
        )
        if accuracy and result.line_accuracy:
            error = [1 - v for v in floats(accuracy[split])]
            line_error = [1 - v for v in floats(result.line_accuracy[split])]
            axes[1].plot(x, error, style, color="C0")
            axes[1].plot(line_x, line_error, style, color="C1")
    for ax in axes:
        ax.set_xlabel("grid point of the simplex" if simplex else "t (0: start, 1: end)")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    if accuracy:
        axes[1].set_ylabel("error")
    first = next(iter(result.loss_max), None)
    summary = ""
    if first is not None:
        summary = (
            f" | {first} max loss: {result.kind} {result.loss_max[first]:.3g}, "
            f"{line_label} {result.line_loss_max[first]:.3g}"
        )
    fig.suptitle(f"{title(result, meta)}{summary} | BatchNorm: {result.bn_statistics}")
    fig.tight_layout()
    return save_figure(fig, path)
