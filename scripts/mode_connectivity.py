"""Mode connectivity on MNIST-1D: the trained Bezier curve between two CNNs against the line.

Trains the two CNNs of ``experiment=mode_connectivity`` (seeds 0 and 1) with ``lsuite-train``,
then a quadratic Bezier curve between their ``last.ckpt`` (``module=curve``, ``probes=curve``,
``test=true``), and prints a Markdown table of the test error and loss: each end, the maximum
along the straight line and the maximum along the curve (11 points of ``t`` each). It also draws
the val and test loss and error against ``t`` for the curve and the line (the ``Curve`` probe on
the whole val and test splits, 21 points of ``t``, drawn by `lsuite.plots.curve_family`) into
``<out>/curve/plots/mode_connectivity.png`` and copies it to ``--figure``::

    python scripts/mode_connectivity.py                  # in multirun/mode_connectivity
    python scripts/mode_connectivity.py --out /tmp/mc --skip-train   # only the curve again
    python scripts/mode_connectivity.py --threads 1      # on a busy CPU (one thread per run)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FIGURE = Path(__file__).resolve().parent / "figures" / "mode_connectivity.png"
FIGURE_POINTS = 21
"""Values of ``t`` in the figure (0, 0.05, ..., 1: the table's 11 and the midpoints between)."""


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


def measure_curve(run_dir: Path) -> Any:
    """Return the ``Curve`` probe's result for a curve run's ``last.ckpt`` on all val and test data.

    The run's config rebuilds the data and the curve module, its final weights are loaded, and
    the probe evaluates ``FIGURE_POINTS`` values of ``t`` on the curve and on the straight line
    between its ends, with the splits ``val`` and ``test`` (every signal, in loader order).
    """
    import torch
    import torch.nn.functional as F

    from lsuite.config.build import build_datamodule, build_module
    from lsuite.config.resume import checkpoint_of
    from lsuite.config.run_checkpoints import read_checkpoint
    from lsuite.config.run_dir import load_run_config
    from lsuite.probes.curve import Curve
    from lsuite.probes.data_source import DataSource
    from lsuite.probes.point import snapshot

    cfg = load_run_config(run_dir)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("test")
    module = build_module(cfg, datamodule)
    module.load_state_dict(read_checkpoint(checkpoint_of(run_dir))["state_dict"], strict=True)
    module.refresh_network()
    module.eval()
    loaders = {"test": datamodule.test_dataloader(), "val": datamodule.val_dataloader()}
    data = {
        split: DataSource([tuple(batch[:2]) for batch in loader], name=split)
        for split, loader in loaders.items()
    }
    point = snapshot(module.probe_network(), F.cross_entropy)
    probe = Curve(num_points=FIGURE_POINTS, batching="loop")
    with torch.no_grad():
        return probe.run(point, data, generator=torch.Generator().manual_seed(0))


def figure(out: Path, copy_to: Path | None) -> Path:
    """Draw the curve run's val and test loss and error against ``t``; return the file.

    Written to ``<out>/curve/plots/mode_connectivity.png`` (`lsuite.plots.curve_family.plot_curve`:
    the curve in blue, the line in orange, test solid and val dashed), then copied to ``copy_to``.
    """
    from lsuite.plots.curve_family import plot_curve

    result = measure_curve(out / "curve")
    path = plot_curve(
        result,
        out / "curve" / "plots" / "mode_connectivity.png",
        meta={"probe": "MNIST-1D CNNs, seeds 0 and 1"},
    )
    error_max = result.error_max or {}
    line_error_max = result.line_error_max or {}
    for split in result.loss:
        sys.stdout.write(
            f"figure, {split}: max error over {FIGURE_POINTS} t: curve "
            f"{error_max.get(split, float('nan')):.3f}, line "
            f"{line_error_max.get(split, float('nan')):.3f}; max loss: curve "
            f"{result.loss_max[split]:.3f}, line {result.line_loss_max[split]:.3f}\n"
        )
    if copy_to is not None:
        copy_to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy_to)
    return path


def main() -> None:
    """Train the ends and the curve, then print the table and draw the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("multirun/mode_connectivity"))
    parser.add_argument("--skip-train", action="store_true", help="reuse the two ends in --out")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of each end")
    parser.add_argument("--curve-epochs", type=int, default=8)
    parser.add_argument("--curve-lr", type=float, default=3e-3)
    parser.add_argument(
        "--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (1 on a busy CPU)"
    )
    parser.add_argument(
        "--figure", type=Path, default=FIGURE, help="copy of the figure (%(default)s)"
    )
    parser.add_argument("--no-figure", action="store_true", help="print the table only")
    ns = parser.parse_args()
    env = dict(os.environ)
    if ns.threads is not None:
        env["OMP_NUM_THREADS"] = str(ns.threads)
        import torch

        torch.set_num_threads(ns.threads)  # the figure's evaluations in this process
    began = time.perf_counter()
    if not ns.skip_train:
        train_ends(ns.out, ns.epochs, env)
    train_curve(ns.out, ns.curve_epochs, ns.curve_lr, env)
    sys.stdout.write(table(ns.out) + f"\n\n({time.perf_counter() - began:.0f} s)\n")
    if not ns.no_figure:
        sys.stdout.write(f"figure: {figure(ns.out, ns.figure)} (copied to {ns.figure})\n")


if __name__ == "__main__":
    main()
