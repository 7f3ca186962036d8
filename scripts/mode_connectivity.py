"""Mode connectivity on MNIST-1D: the trained Bezier curve between two CNNs against the line.

Trains the two CNNs of ``experiment=mode_connectivity`` (seeds 0 and 1) with ``lsuite-train``,
then a quadratic Bezier curve between their ``last.ckpt`` (``module=curve``, ``probes=curve``,
``test=true``), and prints a Markdown table of the test error and loss: each end, the maximum
along the straight line and the maximum along the curve (11 points of ``t`` each)::

    python scripts/mode_connectivity.py                  # in multirun/mode_connectivity
    python scripts/mode_connectivity.py --out /tmp/mc --skip-train   # only the curve again
    python scripts/mode_connectivity.py --threads 1      # on a busy CPU (one thread per run)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def train_ends(out: Path, epochs: int, env: dict[str, str]) -> None:
    """Train the two CNNs into ``out/seed_0`` and ``out/seed_1``."""
    cmd = [sys.executable, "-m", "lsuite.train", "experiment=mode_connectivity"]
    cmd += [f"hydra.sweep.dir={out}", f"trainer.max_epochs={epochs}"]
    subprocess.run(cmd, check=True, timeout=3600, env=env)


def train_curve(out: Path, epochs: int, lr: float, env: dict[str, str]) -> Path:
    """Train the Bezier curve between the two ends; return its run directory."""
    run_dir = out / "curve"
    cmd = [
        sys.executable,
        "-m",
        "lsuite.train",
        "data=mnist1d",
        "model=cnn",
        "optim=adam",
        f"optim.lr={lr}",
        "logger=csv",
        "test=true",
        f"trainer.max_epochs={epochs}",
        "trainer.enable_model_summary=false",
        "module=curve",
        f"module.start={out / 'seed_0'}",
        f"module.end={out / 'seed_1'}",
        "probes=curve",
        "probes.curve.num_batches=4",
        # test the final curve (not the epoch with the best midpoint)
        "callbacks.model_checkpoint.save_top_k=0",
        f"hydra.run.dir={run_dir}",
    ]
    subprocess.run(cmd, check=True, timeout=3600, env=env)
    return run_dir


def metrics(run_dir: Path) -> dict[str, float]:
    """Return the final metrics of a run (its ``status.json``)."""
    return json.loads((run_dir / "status.json").read_text())["metrics"]


def table(out: Path) -> str:
    """Return the Markdown table of the ends, the line and the curve."""
    ends = [metrics(out / f"seed_{s}") for s in (0, 1)]
    curve = metrics(out / "curve")
    rows = [
        ("end 1 (seed 0)", 1 - ends[0]["test/acc"], ends[0]["test/loss"]),
        ("end 2 (seed 1)", 1 - ends[1]["test/acc"], ends[1]["test/loss"]),
        ("line, maximum", curve["test/line_error_max"], curve["test/line_loss_max"]),
        ("Bezier curve, maximum", curve["test/error_max"], curve["test/loss_max"]),
        ("Bezier curve, t = 0.5", 1 - curve["test/acc"], curve["test/loss"]),
    ]
    lines = ["| path | test error | test loss |", "|---|---|---|"]
    lines += [f"| {name} | {error:.3f} | {loss:.3f} |" for name, error, loss in rows]
    return "\n".join(lines)


def main() -> None:
    """Train the ends and the curve, then print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("multirun/mode_connectivity"))
    parser.add_argument("--skip-train", action="store_true", help="reuse the two ends in --out")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of each end")
    parser.add_argument("--curve-epochs", type=int, default=8)
    parser.add_argument("--curve-lr", type=float, default=3e-3)
    parser.add_argument(
        "--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (1 on a busy CPU)"
    )
    ns = parser.parse_args()
    env = dict(os.environ)
    if ns.threads is not None:
        env["OMP_NUM_THREADS"] = str(ns.threads)
    began = time.perf_counter()
    if not ns.skip_train:
        train_ends(ns.out, ns.epochs, env)
    train_curve(ns.out, ns.curve_epochs, ns.curve_lr, env)
    sys.stdout.write(table(ns.out) + f"\n\n({time.perf_counter() - began:.0f} s)\n")


if __name__ == "__main__":
    main()
