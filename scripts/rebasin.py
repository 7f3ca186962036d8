"""Git Re-Basin on MNIST-1D: barrier against width, naive vs aligned, with and without REPAIR.

Three stages through the ordinary commands (``experiment=rebasin``):

1. ``lsuite-train experiment=rebasin``: one MLP per (width, seed), seeds ``0 .. 2P-1`` (``P``
   pairs per width), each job in ``<out>/<job>_width<W>_seed<S>/``;
2. for every pair ``(2p, 2p + 1)``, ``lsuite-probe`` on the odd job with
   ``probes.interpolation.probe.start=<the even job's last.ckpt>`` (interpolation with
   ``align=[none,weight,activation]`` and ``repair=[none,repair]``): the pair's barriers are
   recorded in the odd job's ``probes/interpolation.jsonl``, with ``model.width`` and ``seed``
   as the job's overrides;
3. ``lsuite-report <out>``: every barrier against ``model.width`` (the swept key), mean and
   standard error over the pairs (``seed`` is a repeat key).

Prints a Markdown table of the validation loss and error barriers (mean +- standard error over
pairs) and draws them against width, all curve kinds on one figure
(``scripts/figures/rebasin_barrier_vs_width.png``, from the same records)::

    python scripts/rebasin.py                                  # sweep in multirun/rebasin
    python scripts/rebasin.py --widths 32,128 --pairs 2 --epochs 3 --out /tmp/rb   # reduced
    python scripts/rebasin.py --out /tmp/rb --skip-train       # re-measure an existing sweep
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

KINDS = ("naive", "weight", "weight_repair", "activation", "activation_repair")
PROBE = [
    "probes=interpolation",
    "probes.interpolation.probe.align=[none,weight,activation]",
    "probes.interpolation.probe.repair=[none,repair]",
    "probes.interpolation.num_batches=8",
]
FIGURE = Path(__file__).resolve().parent / "figures" / "rebasin_barrier_vs_width.png"
_JOB = re.compile(r"^\d+_width(\d+)_seed(\d+)$")


def jobs(out: Path) -> dict[int, dict[int, Path]]:
    """Return width -> seed -> job directory of a sweep laid out by ``experiment=rebasin``."""
    found: dict[int, dict[int, Path]] = {}
    for path in sorted(out.iterdir()):
        match = _JOB.match(path.name)
        if match and path.is_dir():
            found.setdefault(int(match.group(1)), {})[int(match.group(2))] = path
    return found


def pair_barriers(job: Path, split: str) -> dict[str, tuple[float, float]] | None:
    """Return kind -> (loss barrier, error barrier) of the job's last lsuite-probe pair record."""
    from lsuite.results import jsonl

    path = job / "probes" / "interpolation.jsonl"
    if not path.is_file():
        return None
    records = [r for r in jsonl.read_records(path) if r.get("result") is not None]
    if not records:
        return None
    result = records[-1]["result"]
    out = {"naive": (result["loss_barrier"][split], result["error_barrier"][split])}
    for kind in result.get("curves", []):
        out[kind] = (
            result["aligned_loss_barrier"][kind][split],
            result["aligned_error_barrier"][kind][split],
        )
    return out


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Return the mean and its standard error (``std / sqrt(n)``, ddof 1; NaN for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, std / math.sqrt(n)


def summarise(out: Path, split: str) -> dict[int, dict[str, list[tuple[float, float]]]]:
    """Return width -> kind -> [(loss barrier, error barrier) per pair] from the sweep's records."""
    table: dict[int, dict[str, list[tuple[float, float]]]] = {}
    for width, seeds in sorted(jobs(out).items()):
        for seed, job in sorted(seeds.items()):
            found = pair_barriers(job, split) if seed % 2 else None
            for kind, values in (found or {}).items():
                table.setdefault(width, {}).setdefault(kind, []).append(values)
    return table


def markdown(table: dict[int, dict[str, list[tuple[float, float]]]]) -> str:
    """Return the table: one row per width, loss / error barrier mean +- SE per kind."""
    kinds = [k for k in KINDS if any(k in row for row in table.values())]
    lines = [
        "| width | pairs | " + " | ".join(k.replace("_", "+") for k in kinds) + " |",
        "|" + "---|" * (len(kinds) + 2),
    ]
    for width, row in table.items():
        cells = []
        for kind in kinds:
            pairs = row.get(kind, [])
            if not pairs:
                cells.append("-")
                continue
            loss, loss_se = mean_se([p[0] for p in pairs])
            error, error_se = mean_se([100 * p[1] for p in pairs])
            cells.append(f"{loss:.3f} ± {loss_se:.3f} / {error:.1f} ± {error_se:.1f}%")
        count = max(len(v) for v in row.values())
        lines.append(f"| {width} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(table: dict[int, dict[str, list[tuple[float, float]]]], split: str, path: Path) -> Path:
    """Draw every kind's loss and error barrier against width, mean with SE bars over pairs."""
    from matplotlib.figure import Figure

    from lsuite.plots.curves import save_figure

    fig = Figure(figsize=(9.0, 3.6))
    axes = fig.subplots(1, 2)
    widths = list(table)
    for kind in KINDS:
        if not any(kind in table[w] for w in widths):
            continue
        for ax, index in zip(axes, (0, 1), strict=True):
            scale = 100 if index else 1
            stats = [mean_se([scale * p[index] for p in table[w].get(kind, [])]) for w in widths]
            errors = [0.0 if math.isnan(se) else se for _, se in stats]
            ax.errorbar(
                widths, [m for m, _ in stats], yerr=errors, marker="o", capsize=3, label=kind
            )
    for ax, name in zip(axes, (f"{split} loss barrier", f"{split} error barrier (%)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.set_xlabel("width (3 hidden layers)")
        ax.set_ylabel(name)
    axes[0].legend(fontsize=8)
    pairs = max(len(v) for row in table.values() for v in row.values())
    fig.suptitle(f"MNIST-1D MLPs: barrier of the linear path (mean ± SE over {pairs} pairs)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)


def run(command: list[str], timeout: float) -> None:
    """Run one command; exit with its output's tail on failure."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    print(f"  {' '.join(command[2:5])} ...: {time.perf_counter() - start:.0f} s")
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")


def main(argv: Sequence[str] | None = None) -> None:
    """Train, measure every pair, run lsuite-report, print the table and write the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("multirun/rebasin"))
    parser.add_argument("--widths", default="32,128,512")
    parser.add_argument("--pairs", type=int, default=2, help="independent pairs per width")
    parser.add_argument("--epochs", type=int, default=None, help="default: the experiment's 20")
    parser.add_argument("--points", type=int, default=21, help="alpha grid points")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--split", default="val")
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per command")
    parser.add_argument("overrides", nargs="*", help="lsuite-train overrides")
    ns = parser.parse_args(argv)
    if ns.pairs < 1:
        parser.error("--pairs must be >= 1")
    out = ns.out.resolve()
    start = time.perf_counter()
    if not ns.skip_train:
        seeds = ",".join(str(s) for s in range(2 * ns.pairs))
        command = [
            sys.executable,
            "-m",
            "lsuite.train",
            "experiment=rebasin",
            f"hydra.sweep.dir={out}",
            f"model.width={ns.widths}",
            f"seed={seeds}",
            f"data.data_dir={out / 'data'}",  # generated once, then read
            *([f"trainer.max_epochs={ns.epochs}"] if ns.epochs else []),
            *ns.overrides,
        ]
        run(command, ns.timeout)
    for _, seeds_of in sorted(jobs(out).items()):
        for seed, job in sorted(seeds_of.items()):
            partner = seeds_of.get(seed - 1)
            if seed % 2 == 0 or partner is None:
                continue
            start_ckpt = partner / "checkpoints" / "last.ckpt"
            command = [
                sys.executable,
                "-m",
                "lsuite.probe",
                str(job),
                "--no-progress",
                *PROBE,
                f"probes.interpolation.probe.num_points={ns.points}",
                f"probes.interpolation.probe.start={start_ckpt}",
            ]
            run(command, ns.timeout)
    run([sys.executable, "-m", "lsuite.report.cli", str(out)], ns.timeout)  # lsuite-report
    table = summarise(out, ns.split)
    text = markdown(table)
    (out / "rebasin_table.md").write_text(text + "\n", encoding="utf-8")
    print(f"{ns.split} loss barrier / error barrier, mean ± SE over pairs:\n{text}")
    print(f"figure: {figure(table, ns.split, ns.figure)}; lsuite-report: {out / 'report'}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
