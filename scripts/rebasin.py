"""Git Re-Basin on MNIST-1D: barrier against width, naive vs aligned, with and without REPAIR.

Trains the six MLPs of ``experiment=rebasin`` (widths 32, 128, 512; seeds 0, 1) with
``lsuite-train``, measures the pair of each width with ``lsuite-probe --pairs`` (interpolation
with ``align=[none,weight,activation]`` and ``repair=[none,repair]``), prints a Markdown table of
the validation loss and error barriers and draws barrier against width::

    python scripts/rebasin.py                       # sweep in multirun/rebasin
    python scripts/rebasin.py --out /tmp/rb --skip-train   # re-measure an existing sweep
    python scripts/rebasin.py --out /tmp/rb --skip-train --reuse   # only widths not measured
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from lsuite.pairs.matrix import read_matrix_csv

WIDTHS = (32, 128, 512)
KINDS = ("naive", "weight", "weight_repair", "activation", "activation_repair")
PROBE = [
    "probes=interpolation",
    "probes.interpolation.probe.num_points=21",
    "probes.interpolation.probe.align=[none,weight,activation]",
    "probes.interpolation.probe.repair=[none,repair]",
    "probes.interpolation.num_batches=8",
]
FIGURE = Path(__file__).resolve().parent / "figures" / "rebasin_barrier_vs_width.png"


def barrier(directory: Path, split: str, metric: str, kind: str) -> float:
    """Return the barrier of the one pair of a width directory from its pairs CSV."""
    suffix = "" if kind == "naive" else f"_{kind}"
    _, matrix = read_matrix_csv(directory / f"pairs_{split}_{metric}_barrier{suffix}.csv")
    return matrix[0][1]


def main() -> None:
    """Train, measure, print the table and write the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("multirun/rebasin"))
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--split", default="val")
    parser.add_argument("--reuse", action="store_true", help="keep widths already measured")
    ns = parser.parse_args()
    if not ns.skip_train:
        cmd = [sys.executable, "-m", "lsuite.train", "experiment=rebasin"]
        subprocess.run([*cmd, f"hydra.sweep.dir={ns.out}"], check=True, timeout=1800)
    table: dict[int, dict[str, tuple[float, float]]] = {}
    for width in WIDTHS:
        directory = ns.out / f"width_{width}"
        cmd = [sys.executable, "-m", "lsuite.probe", str(directory), "--pairs", "--no-progress"]
        done = (directory / f"pairs_{ns.split}_error_barrier_{KINDS[-1]}.csv").is_file()
        if not (ns.reuse and done):
            subprocess.run([*cmd, *PROBE], check=True, timeout=1800)
        table[width] = {
            kind: (
                barrier(directory, ns.split, "loss", kind),
                barrier(directory, ns.split, "error", kind),
            )
            for kind in KINDS
        }
    header = "| width | " + " | ".join(k.replace("_", "+") for k in KINDS) + " |"
    lines = [header, "|" + "---|" * (len(KINDS) + 1)]
    for width, row in table.items():
        cells = [f"{row[k][0]:.3f} / {100 * row[k][1]:.1f}%" for k in KINDS]
        lines.append(f"| {width} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    (ns.out / "rebasin_table.md").write_text(text + "\n", encoding="utf-8")
    print(f"{ns.split} loss barrier / error barrier per pair:\n{text}")
    _figure(table, ns.split)
    print(f"figure: {FIGURE}")


def _figure(table: dict[int, dict[str, tuple[float, float]]], split: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.6))
    axes = fig.subplots(1, 2)
    widths = list(table)
    for kind in KINDS:
        for ax, index in zip(axes, (0, 1), strict=True):
            values = [table[w][kind][index] * (100 if index else 1) for w in widths]
            ax.plot(widths, values, "o-", label=kind.replace("_", "+"))
    for ax, name in zip(axes, (f"{split} loss barrier", f"{split} error barrier (%)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.set_xlabel("width (3 hidden layers)")
        ax.set_ylabel(name)
    axes[0].legend(fontsize=8)
    fig.suptitle("MNIST-1D MLPs, two seeds per width: barrier of the linear path")
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110)


if __name__ == "__main__":
    main()
