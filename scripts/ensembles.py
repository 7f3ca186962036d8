"""Ensembles on MNIST-1D: independent runs disagree more than points of one run (Fort et al. 2019).

Trains ``experiment=ensembles`` (four MLPs, seeds 0-3, a checkpoint at every epoch end) and one
line of MLPs with ``module=subspace`` (Wortsman et al. 2021, seed 0), then measures four
ensembles with ``lsuite-probe ... probes=ensemble`` on the validation split and prints a
Markdown table:

- ``independent``: the final (last epoch) checkpoint of each of the four runs;
- ``trajectory``: the last four epoch checkpoints of seed 0 (one run's trajectory);
- ``subspace``: four points of the trained line (alpha 0, 1/3, 2/3, 1);
- ``all``: every epoch checkpoint of the four runs, embedded with t-SNE and coloured by run
  (Fort et al.'s figure), copied to ``scripts/figures/ensembles_tsne.png``::

    python scripts/ensembles.py --out multirun/ensembles
    python scripts/ensembles.py --out multirun/ensembles --skip-train     # measure again
    python scripts/ensembles.py --out /tmp/ens --epochs 2 --no-figure     # a quick check
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from lsuite.results.jsonl import read_probe_records

SEEDS = (0, 1, 2, 3)
ALPHAS = (0.0, 1 / 3, 2 / 3, 1.0)
FIGURE = Path(__file__).resolve().parent / "figures" / "ensembles_tsne.png"
COLUMNS = (
    "ensemble",
    "members",
    "member acc",
    "ensemble acc",
    "member NLL",
    "ensemble NLL",
    "disagreement",
    "disagreement / error",
    "KL",
    "weight cosine",
    "change cosine",
)


def train(out: Path, epochs: int) -> None:
    """Train the four seeds (one sweep) and the subspace line."""
    base = [sys.executable, "-m", "lsuite.train", "experiment=ensembles"]
    epochs_key = f"trainer.max_epochs={epochs}"
    subprocess.run([*base, f"hydra.sweep.dir={out}", epochs_key], check=True, timeout=3600)
    subspace = [*base, "hydra.mode=RUN", "module=subspace", "seed=0", "callbacks=[default]"]
    subspace.append(epochs_key)
    subprocess.run([*subspace, f"hydra.run.dir={out / 'subspace'}"], check=True, timeout=3600)


def final(run: Path) -> Path:
    """Return a run's last epoch checkpoint (``last.ckpt`` is the best one's copy here)."""
    return sorted((run / "checkpoints").glob("step*.ckpt"))[-1]


def subspace_points(run: Path) -> list[Path]:
    """Save the weights of the trained line at `ALPHAS` as state dicts; return the files."""
    from lsuite.config.probe_checkpoints import build_job, load_checkpoint_into
    from lsuite.config.run_checkpoints import read_checkpoint
    from lsuite.config.run_dir import load_run_config

    job = build_job(load_run_config(run), run)
    load_checkpoint_into(job, read_checkpoint(run / "checkpoints" / "last.ckpt"))
    folder = run / "points"
    folder.mkdir(exist_ok=True)
    files = []
    with torch.no_grad():
        for alpha in ALPHAS:
            params = job.module.point(torch.tensor([1.0 - alpha, alpha]))
            file = folder / f"alpha_{alpha:.2f}.pt"
            torch.save({k: v.detach().cpu().clone() for k, v in params.items()}, file)
            files.append(file)
    return files


def measure(run: Path, name: str, points: list[str], *extra: str) -> dict[str, float]:
    """Measure one ensemble with lsuite-probe at ``run``; return its record's scalars."""
    cmd = [sys.executable, "-m", "lsuite.probe", "--no-progress", str(run), "probes=[ensemble]"]
    quoted = ",".join(f"'{p}'" for p in points)
    cmd += [
        f"probes.ensemble.probe.points=[{quoted}]",
        "probes.ensemble.probe.include_current=false",
        f"probes.ensemble.probe.name={name}",
        *extra,
    ]
    subprocess.run(cmd, check=True, timeout=1800)
    record = read_probe_records(run / "probes" / f"{name}.jsonl")[-1]
    if record.result is None:
        raise RuntimeError(f"{name}: the measurement failed: {record.error}")
    figure = sorted(run.glob(f"plots/{name}_*"))[-1]
    return {**record.result.scalars(), "figure": str(figure)}


def main() -> None:
    """Train, measure the four ensembles, print the table and copy the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("multirun/ensembles"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--no-figure", action="store_true", help="leave scripts/figures alone")
    ns = parser.parse_args()
    out = ns.out.resolve()
    if not ns.skip_train:
        train(out, ns.epochs)
    home = out / "seed_0"
    epochs = sorted((home / "checkpoints").glob("step*.ckpt"))
    lines = {
        "independent": [str(final(out / f"seed_{s}")) for s in SEEDS],
        "trajectory": [str(p) for p in epochs[-4:]],
        "subspace": [str(p) for p in subspace_points(out / "subspace")],
    }
    rows = {}
    for name, points in lines.items():
        if name == "trajectory":  # its own probe name: init comes from the run's probe state
            rows[name] = measure(home, "ensemble", points)
        else:
            rows[name] = measure(
                home, f"ensemble_{name}", points, "probes.ensemble.probe.init=null"
            )
    pattern = str(out / "seed_*" / "checkpoints" / "step*.ckpt")
    every = measure(
        home,
        "ensemble_all",
        [pattern],
        "probes.ensemble.probe.embedding=tsne",
        "probes.ensemble.probe.init=null",
        "probes.ensemble.probe.perplexity=10",
    )
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for name, s in {**rows, "all checkpoints": every}.items():
        values = [
            f"{int(s['num_members'])}",
            f"{s['val_member_accuracy']:.3f}",
            f"{s['val_ensemble_accuracy']:.3f}",
            f"{s['val_member_nll']:.3f}",
            f"{s['val_ensemble_nll']:.3f}",
            f"{s['val_disagreement']:.3f}",
            f"{s['val_disagreement'] / (1 - s['val_member_accuracy']):.3f}",
            f"{s['val_kl']:.3f}",
            f"{s['weight_cosine']:.3f}",
            f"{s['change_cosine']:.3f}" if "change_cosine" in s else "-",
        ]
        print(f"| {name} | " + " | ".join(values) + " |")
    print(f"figure: {every['figure']}")
    if not ns.no_figure:
        FIGURE.parent.mkdir(exist_ok=True)
        shutil.copyfile(every["figure"], FIGURE)
        print(f"copied to {FIGURE}")


if __name__ == "__main__":
    main()
