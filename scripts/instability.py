"""Instability analysis (Frankle et al. 2020) through the ordinary commands: barrier against k.

Three stages, each a real ``lsuite-train`` or ``lsuite-probe`` subprocess
(``experiment=instability``):

1. a parent run keeping trajectory checkpoints every ``--every`` steps
   (``callbacks=[default,trajectory]``, named ``stepN.ckpt``);
2. one multirun of children over k x data_seed: ``init_from`` the parent's checkpoint at step k
   (``init_from=null`` for k = 0: the parent's own initial weights, drawn from the same seed),
   trained for the parent's length with a fresh optimizer;
3. for each k, ``lsuite-probe`` on the first child with
   ``probes.interpolation.probe.start=<its sibling's last.ckpt>``: loss and error barriers on
   the line between the two children (train and validation probe batches).

Prints the error barrier against k and the first k where the validation error barrier falls
below 2% (Frankle et al.'s threshold), and writes ``instability_<model>.csv`` and ``.png`` to
``--figures``. The runs go to ``--out`` (default ``runs/instability_<model>``); the commands run
from there (``init_from`` paths are relative); the children's job directories are
``children/<job number>`` (each one's ``config.yaml`` records its ``init_from`` and ``data_seed``).

Usage: ``python scripts/instability.py [--model cnn] [--data mnist1d] [--epochs 15]
[--ks 0,15,30,60,90] [--every 15] [--smoke] [--out DIR] [--figures DIR] [OVERRIDE ...]``.
``--model resnet`` is ResNet-20 with Conv1d / BatchNorm1d layers on MNIST-1D's ``(1, 40)``
signals (Conv2d on ``--data digits``); the barrier's BatchNorm statistics are each child's own,
interpolated along the line (``bn_statistics: interpolated`` in the records).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
THRESHOLD = 0.02
FIELDS = ("train_error_barrier", "val_error_barrier", "val_loss_barrier")


def run(command: list[str], cwd: Path, log: Path, timeout: float) -> None:
    """Run one command from ``cwd``, its output to ``log``; exit with its tail on failure."""
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.setdefault("WANDB_MODE", "offline")
    with log.open("w") as handle:
        done = subprocess.run(
            command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, env=env, timeout=timeout
        )
    seconds = time.perf_counter() - start
    print(f"  {Path(command[0]).name} {' '.join(command[1:3])} ...: {seconds:.0f} s, {log.name}")
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{log.read_text()[-3000:]}")


def children_by_k(sweep: Path) -> dict[int, dict[int, Path]]:
    """Return k -> data_seed -> job directory, read from each job's recorded config."""
    found: dict[int, dict[int, Path]] = {}
    for config in sorted(sweep.glob("*/config.yaml")):
        cfg = OmegaConf.load(config)
        init = cfg.get("init_from")
        match = re.search(r"step(\d+)\.ckpt$", str(init)) if init else None
        k = int(match.group(1)) if match else 0
        found.setdefault(k, {})[int(cfg.data_seed)] = config.parent
    return found


def last_interpolation(run_dir: Path) -> dict[str, Any]:
    """Return the result of the last interpolation record of ``run_dir``."""
    from lsuite.results import jsonl

    records = jsonl.read_records(run_dir / "probes" / "interpolation.jsonl")
    result = records[-1]["result"]
    if result is None:
        sys.exit(f"the interpolation probe failed in {run_dir}: {records[-1].get('error')}")
    return result


def plot(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    """Draw the error barrier (train, val) against k, with the 2% threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    ks = [r["k"] for r in rows]
    for split in ("train", "val"):
        ax.plot(ks, [100 * r[f"{split}_error_barrier"] for r in rows], "o-", label=split)
    ax.axhline(100 * THRESHOLD, color="grey", ls="--", lw=1, label="2%")
    ax.set_xlabel("k (parent steps before the children split)")
    ax.set_ylabel("error barrier (%)")
    ax.set_title(f"Instability: {title}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    """Run the three stages and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--data", default="mnist1d", help="mnist1d or digits")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument(
        "--ks", default="0,15,30,60,90", help="parent steps k, multiples of --every"
    )
    parser.add_argument("--every", type=int, default=15, help="trajectory checkpoint interval")
    parser.add_argument("--seeds", default="1,2", help="the two children's data_seed")
    parser.add_argument("--smoke", action="store_true", help="tiny: 1 epoch of 6 batches")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--figures", type=Path, default=ROOT / "scripts" / "figures")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per command")
    parser.add_argument(
        "--probe-set", action="append", default=[], help="lsuite-probe override (repeatable)"
    )
    parser.add_argument("--reuse", action="store_true", help="keep --out's runs: stage 3 only")
    parser.add_argument("overrides", nargs="*", help="lsuite-train overrides, e.g. optim.lr=0.1")
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    if len(seeds) != 2 or any(k % args.every for k in ks):
        parser.error("--seeds needs two values and every k must be a multiple of --every")
    name = args.model if args.data == "mnist1d" else f"{args.model}_{args.data}"
    out = (args.out or ROOT / "runs" / f"instability_{name}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    args.figures.mkdir(parents=True, exist_ok=True)
    common = [
        "experiment=instability",
        f"model={args.model}",
        f"data={args.data}",
        f"trainer.max_epochs={args.epochs}",
        *args.overrides,
    ]
    if args.data == "mnist1d":
        common.append(f"data.data_dir={out / 'data'}")  # generated once, then read
    points, batches = 13, 4
    if args.smoke:
        common += ["trainer.limit_train_batches=6", "trainer.limit_val_batches=1"]
        points, batches = 5, 1
    start = time.perf_counter()
    print(f"# instability: {args.model} on {args.data}, {args.epochs} epochs, k in {ks}, in {out}")
    if not args.reuse:
        run(
            [
                str(BIN / "lsuite-train"),
                *common,
                "callbacks=[default,trajectory]",
                f"callbacks.trajectory.every_n_train_steps={args.every}",
                "callbacks.trajectory.filename='step{step}'",
                "hydra.run.dir=parent",
            ],
            out,
            out / "parent.log",
            args.timeout,
        )
        inits = ["null" if k == 0 else f"parent/checkpoints/step{k}.ckpt" for k in ks]
        run(
            [
                str(BIN / "lsuite-train"),
                "-m",
                *common,
                f"data_seed={args.seeds}",
                f"init_from={','.join(inits)}",
                "hydra.sweep.dir=children",
                # job directories children/<job number>: lsuite-probe reads an argument holding "="
                # as an override, and a path with "," cannot be a Hydra value
                "hydra.sweep.subdir=${hydra.job.num}",
            ],
            out,
            out / "children.log",
            args.timeout,
        )
    children = children_by_k(out / "children")
    rows = []
    for k in ks:
        first, second = (children[k][s] for s in seeds)
        run(
            [
                str(BIN / "lsuite-probe"),
                str(first),
                "probes=[interpolation]",
                f"probes.interpolation.probe.start={second / 'checkpoints' / 'last.ckpt'}",
                f"probes.interpolation.probe.num_points={points}",
                f"probes.interpolation.num_batches={batches}",
                *args.probe_set,
                "--no-progress",
            ],
            out,
            out / f"probe_k{k}.log",
            args.timeout,
        )
        result = last_interpolation(first)
        accuracy = result["accuracy"]["val"]
        rows.append(
            {
                "k": k,
                "train_error_barrier": result["error_barrier"]["train"],
                "val_error_barrier": result["error_barrier"]["val"],
                "val_loss_barrier": result["loss_barrier"]["val"],
                "val_error_ends": (1 - accuracy[0], 1 - accuracy[-1]),
            }
        )
    stem = args.figures / f"instability_{name}{'_smoke' if args.smoke else ''}"
    with stem.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["k", *FIELDS])
        for r in rows:
            writer.writerow([r[key] for key in ("k", *FIELDS)])
    plot(rows, f"{args.model} on {args.data}", stem.with_suffix(".png"))
    print("| k | train error barrier | val error barrier | val loss barrier | children val error |")
    print("|---|---|---|---|---|")
    for r in rows:
        a, b = r["val_error_ends"]
        print(
            f"| {r['k']} | {100 * r['train_error_barrier']:.2f}% | "
            f"{100 * r['val_error_barrier']:.2f}% | {r['val_loss_barrier']:.4f} | "
            f"{100 * a:.1f}% / {100 * b:.1f}% |"
        )
    stable = [r["k"] for r in rows if r["val_error_barrier"] < THRESHOLD]
    first_k = stable[0] if stable else None
    print(f"first k with val error barrier < 2%: {first_k if first_k is not None else 'none'}")
    print(f"wrote {stem.with_suffix('.csv')} and {stem.with_suffix('.png')}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
