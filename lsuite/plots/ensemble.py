"""Plot an ensemble record: the members' prediction embedding by trajectory, and disagreement."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lsuite.plots.curves import floats, save_figure, title
from lsuite.probes.ensemble import EnsembleResult

_ANNOTATE_AT_MOST = 16
"""Members are labelled in the embedding when there are at most this many."""


def plot_ensemble(
    result: EnsembleResult, path: Path, *, meta: Mapping[str, Any] | None = None
) -> Path:
    """Draw the 2-D embedding of the members' predictions and their disagreement matrix.

    The split shown is ``val`` when measured, else the first one. In the embedding each group
    (trajectory: a run directory, or ``run`` for the measured run) has its own colour and its
    members are joined in order, as in Fort, Hu & Lakshminarayanan's (2019) figure of
    checkpoints along several trajectories. The file is written atomically.

    Args:
        result: the ensemble result.
        path: output image; the suffix picks the format.
        meta: the record's provenance (``probe``, ``step``, ``epoch`` go in the title).

    Returns:
        ``path``.
    """
    splits = list(result.disagreement)
    split = "val" if "val" in splits else splits[0]
    coords = result.embedding.get(split)
    fig = Figure(figsize=(11.0 if coords else 5.5, 4.8))
    axes = fig.subplots(1, 2 if coords else 1, squeeze=False)[0]
    if coords:
        _embedding(axes[0], result, coords, split)
    _heatmap(fig, axes[-1], result, split)
    accuracy = result.ensemble_accuracy[split]
    members = floats(result.member_accuracy[split])
    fig.suptitle(
        f"{title(result, meta)} | {len(result.labels)} members | {split} accuracy: ensemble "
        f"{accuracy:.3f}, members {min(members):.3f}-{max(members):.3f}"
    )
    fig.tight_layout()
    return save_figure(fig, path)


def _embedding(ax: Any, result: EnsembleResult, coords: list[list[float]], split: str) -> None:
    groups = list(dict.fromkeys(result.groups))
    for index, group in enumerate(groups):
        rows = [i for i, g in enumerate(result.groups) if g == group]
        xs = [float(coords[i][0]) for i in rows]
        ys = [float(coords[i][1]) for i in rows]
        color = f"C{index % 10}"
        ax.plot(xs, ys, "-", color=color, linewidth=0.8, alpha=0.6)
        ax.scatter(xs, ys, color=color, s=24, label=group, zorder=3)
        ax.scatter(xs[-1:], ys[-1:], color=color, s=70, marker="*", zorder=4)
    if len(result.labels) <= _ANNOTATE_AT_MOST:
        for i, label in enumerate(result.labels):
            ax.annotate(
                _short(label), coords[i], fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    method = result.embedding_method
    explained = result.explained_variance.get(split)
    if method == "pca" and explained:
        ax.set_xlabel(f"PC 1 ({100 * float(explained[0]):.0f}% of variance)")
        ax.set_ylabel(f"PC 2 ({100 * float(explained[1]):.0f}%)")
    else:
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
    ax.set_title(f"{method} of {split} predictions (star: last of a group)")
    if len(groups) > 1:
        ax.legend(fontsize=7)


def _heatmap(fig: Figure, ax: Any, result: EnsembleResult, split: str) -> None:
    matrix = result.disagreement[split]
    size = len(matrix)
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0)
    ax.set_title(f"{split} disagreement (fraction of samples)")
    if size <= _ANNOTATE_AT_MOST:
        names = [_short(label) for label in result.labels]
        ax.set_xticks(range(size), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(size), names, fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def _short(label: str) -> str:
    """Return a checkpoint path's ``run/stem``, other labels unchanged."""
    path = Path(label)
    if path.suffix in (".ckpt", ".pt", ".pth"):
        run = path.parent.parent.name if path.parent.name == "checkpoints" else path.parent.name
        return f"{run}/{path.stem}" if run else path.stem
    return label
