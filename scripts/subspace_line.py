"""Subspace line against standard training: validation accuracy along each trained line.

Runs the README's comparison (Wortsman et al. 2021, "Learning neural network subspaces") as one
sweep, ``lsuite-train -m module=classifier,subspace trainer.max_epochs=40 seed=0,1`` (default
MLP on the digits, csv logger) into ``--out``, or reads such a sweep with ``--skip-train``. Then
prints a Markdown table of the test accuracy (standard training, the line's midpoint) and the
validation accuracy along each line (``<run>/subspace.json``, alpha = 0 ... 1), and draws that
accuracy against alpha, one colour per seed, with the standard runs' val (dashed) and test
(dotted) accuracy as horizontal lines, into ``--figure``::

    python scripts/subspace_line.py --threads 1                 # sweep in multirun/subspace_line
    python scripts/subspace_line.py --out DIR --skip-train       # redraw an existing sweep
    python scripts/subspace_line.py --epochs 1 --out /tmp/s trainer.limit_train_batches=2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

FIGURE = Path(__file__).resolve().parent / "figures" / "subspace_line.png"
MODULES = ("classifier", "subspace")


@dataclass
class Comparison:
    """The sweep's numbers by seed.

    Attributes:
        standard: seed -> metrics of the ``module=classifier`` run: ``test/acc`` (of the
            checkpoint best by val/acc, which ``test=true`` evaluates) and ``val/acc`` (the last
            epoch's, from ``csv/metrics.csv``; the line is evaluated at the last weights too).
        midpoint: seed -> the same metrics of the ``module=subspace`` run (at the midpoint).
        alpha: seed -> the line's positions ``alpha`` (0: vertex 0, 1: vertex 1), ascending.
        line_val_acc: seed -> validation accuracy at each ``alpha``.
    """

    standard: dict[int, dict[str, float]] = field(default_factory=dict)
    midpoint: dict[int, dict[str, float]] = field(default_factory=dict)
    alpha: dict[int, list[float]] = field(default_factory=dict)
    line_val_acc: dict[int, list[float]] = field(default_factory=dict)


def train(out: Path, epochs: int, seeds: Sequence[int], extra: Sequence[str], env: dict) -> None:
    """Run the sweep ``module=classifier,subspace`` x ``seed`` into ``out`` (one job at a time)."""
    cmd = [sys.executable, "-m", "lsuite.train", "-m", f"module={','.join(MODULES)}"]
    cmd += [f"seed={','.join(str(s) for s in seeds)}", f"trainer.max_epochs={epochs}"]
    cmd += ["logger=csv", "trainer.enable_model_summary=false", f"hydra.sweep.dir={out}"]
    subprocess.run([*cmd, *extra], check=True, timeout=3600, env=env)


def read_line(run_dir: Path) -> tuple[list[float], list[float]]:
    """Return ``(alpha, val_acc)`` along a subspace run's line, from its ``subspace.json``.

    Raises:
        SystemExit: when the file is missing or the run trained a simplex, not a line.
    """
    from lsuite.model.subspace_evaluation import EVALUATION_FILE

    path = run_dir / EVALUATION_FILE
    if not path.is_file():
        raise SystemExit(f"{path}: missing; expected the evaluation a module=subspace run writes")
    rows = json.loads(path.read_text())["points"]
    if any(len(row["weights"]) != 2 for row in rows):
        raise SystemExit(f"{path}: a simplex; expected a line (module.num_vertices=2)")
    pairs = sorted((float(row["weights"][1]), float(row["val_acc"])) for row in rows)
    return [a for a, _ in pairs], [v for _, v in pairs]


def last_val_acc(run_dir: Path) -> float:
    """Return the last validation accuracy a run's CSV logger wrote.

    Raises:
        SystemExit: when the run has no ``val/acc`` in ``csv/metrics.csv`` (not ``logger=csv``).
    """
    from lsuite.report.training_log import final_log_values, read_training_log

    value = final_log_values(read_training_log(run_dir)).get("val/acc")
    if value is None:
        raise SystemExit(f"{run_dir}: no val/acc in csv/metrics.csv; expected a logger=csv run")
    return value


def read_sweep(out: Path) -> Comparison:
    """Read the runs of a ``module=classifier,subspace`` x ``seed`` sweep.

    Raises:
        SystemExit: for a run that did not complete or has no test/acc, an unexpected module,
            or a seed that lacks one of the two modules.
    """
    from lsuite.report.runs import find_runs

    found = Comparison()
    for run in find_runs(out):
        if run.status != "completed" or "test/acc" not in run.metrics:
            raise SystemExit(
                f"{run.directory}: status {run.status!r}, metrics {sorted(run.metrics)}; "
                "expected a completed run with test/acc (test=true)"
            )
        keys = run.hyperparameters
        module, seed = keys.get("module"), int(keys.get("seed", 0))
        metrics = {"test/acc": run.metrics["test/acc"], "val/acc": last_val_acc(run.directory)}
        if module == "classifier":
            found.standard[seed] = metrics
        elif module == "subspace":
            found.midpoint[seed] = metrics
            found.alpha[seed], found.line_val_acc[seed] = read_line(run.directory)
        else:
            raise SystemExit(f"{run.directory}: module={module!r}; expected one of {MODULES}")
    if not found.midpoint or set(found.standard) != set(found.midpoint):
        raise SystemExit(
            f"{out}: seeds {sorted(found.standard)} with module=classifier and "
            f"{sorted(found.midpoint)} with module=subspace; expected the same seeds for both"
        )
    return found


def markdown(found: Comparison) -> str:
    """Return the test-accuracy table and the validation accuracy along each line."""
    seeds = sorted(found.standard)
    head = "| | " + " | ".join(f"test acc, seed {s}" for s in seeds) + " |"
    lines = [head, "|---|" + "---|" * len(seeds)]
    for label, runs in (
        ("standard training (`module=classifier`)", found.standard),
        ("line midpoint (`module=subspace`)", found.midpoint),
    ):
        lines.append(f"| {label} | " + " | ".join(f"{runs[s]['test/acc']:.3f}" for s in seeds))
        lines[-1] += " |"
    for s in seeds:
        alphas = " ".join(f"{a:g}" for a in found.alpha[s])
        values = " ".join(f"{v:.3f}" for v in found.line_val_acc[s])
        lines.append(f"\nseed {s}: val acc along the line, alpha = {alphas}: {values}")
        lines[-1] += f" (standard training: val {found.standard[s]['val/acc']:.3f})"
    return "\n".join(lines)


def figure(found: Comparison, path: Path) -> Path:
    """Draw validation accuracy against alpha for each line, standard runs as horizontal lines."""
    from matplotlib.figure import Figure

    from lsuite.plots.curves import save_figure

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for i, seed in enumerate(sorted(found.midpoint)):
        color = f"C{i}"
        ax.plot(
            found.alpha[seed],
            found.line_val_acc[seed],
            "o-",
            color=color,
            label=f"line, seed {seed}",
        )
        standard = found.standard[seed]
        ax.axhline(standard["val/acc"], color=color, linestyle="--", linewidth=1.0)
        ax.axhline(standard["test/acc"], color=color, linestyle=":", linewidth=1.0)
    ax.plot([], [], "--", color="0.4", label="standard training, val")
    ax.plot([], [], ":", color="0.4", label="standard training, test")
    ax.set_xlabel("alpha (0: vertex 0, 0.5: midpoint, 1: vertex 1)")
    ax.set_ylabel("accuracy (the lines: validation)")
    ax.legend(fontsize="small")
    ax.set_title("subspace line (module=subspace) vs standard training")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> None:
    """Run (or read) the sweep, print the table and draw the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="extra lsuite-train overrides of every job")
    parser.add_argument("--out", type=Path, default=Path("multirun/subspace_line"))
    parser.add_argument("--skip-train", action="store_true", help="read the sweep in --out")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument("--figure", type=Path, default=FIGURE, help="output (%(default)s)")
    parser.add_argument(
        "--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (1 on a busy CPU)"
    )
    ns = parser.parse_args(argv)
    env = dict(os.environ)
    if ns.threads is not None:
        env["OMP_NUM_THREADS"] = str(ns.threads)
    began = time.perf_counter()
    if not ns.skip_train:
        seeds = [int(s) for s in ns.seeds.split(",")]
        train(ns.out, ns.epochs, seeds, ns.overrides, env)
    found = read_sweep(ns.out)
    sys.stdout.write(markdown(found) + f"\n\n({time.perf_counter() - began:.0f} s)\n")
    sys.stdout.write(f"figure: {figure(found, ns.figure)}\n")


if __name__ == "__main__":
    main()
