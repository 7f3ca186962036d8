"""Draw pair matrices (loss and error barriers) side by side as heat-maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from lsuite.results.jsonl import write_atomic


def plot_pair_heatmaps(
    path: Path, labels: Sequence[str], matrices: Mapping[str, Sequence[Sequence[float]]]
) -> Path:
    """Draw one annotated heat-map per matrix (title: its name) into a PNG, written atomically.

    Args:
        path: the ``.png`` file.
        labels: the ``N`` point labels (rows and columns).
        matrices: title -> ``(N, N)`` values, e.g. ``{"train loss barrier": ...}``.

    Returns:
        The file written.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = max(len(matrices), 1)
    size = len(labels)
    side = 1.2 + 0.6 * size
    fig, axes = plt.subplots(1, count, figsize=(side * count + 1.0, side), squeeze=False)
    for ax, (title, matrix) in zip(axes[0], matrices.items(), strict=False):
        top = max((max(row) for row in matrix), default=0.0)
        image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(top, 1e-9))
        ax.set_title(title)
        ax.set_xticks(range(size), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(size), labels, fontsize=8)
        for i in range(size):
            for j in range(size):
                ax.text(
                    j, i, f"{matrix[i][j]:.3g}", ha="center", va="center", fontsize=7, color="white"
                )
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return write_atomic(path, buffer.getvalue())


__all__ = ["plot_pair_heatmaps"]
