"""End to end through the real ``lsuite-train``: every probe alone, all together, and DDP.

Default callbacks (progress bar on), ``test=true``, wandb offline plus CSV, 2 epochs of a tiny
MLP, small probe budgets, ``on_error=raise``. Every run has a hard timeout so a hang (issue 10,
item 1: DDP with a per-epoch probe) fails instead of blocking CI.
"""

import csv
import sys
from pathlib import Path

import pytest
from timed_run import command_env, run_timed
from tiny_run import TINY_RUN

from lsuite.results import jsonl

CONF_PROBES = Path(__file__).resolve().parents[2] / "conf" / "probes"
PROBES = sorted(p.stem for p in CONF_PROBES.glob("*.yaml"))

TINY = [
    *TINY_RUN,
    "data.batch_size=32",
]
"""2 epochs of 3 steps; the default callbacks, progress bar included, and ``test=true`` stay."""

CSV = ["logger=[csv]"]
"""Loggers of the one-probe runs (wandb's start-up alone costs ~10 s a run)."""

CSV_WANDB = ["logger=[csv,wandb]"]
"""Loggers of the runs with every probe (wandb offline)."""

BUDGETS = {
    "hessian_eigenvalues": ["probe.max_iter=12"],
    "hessian_spectrum": ["probe.num_runs=1", "probe.lanczos_steps=8", "probe.num_points=32"],
    "hessian_trace": ["probe.num_matvecs=8", "probe.rel_stderr=null"],
    "interpolation": ["probe.num_points=3"],
    "line": ["probe.num_points=3"],
    "plane": ["probe.num_points=3"],
    "sharpness": [
        "probe.rho=[0.05]",
        "probe.steps=1",
        "probe.sigma=[0.01]",
        "probe.num_samples=2",
    ],
}
"""Small budgets by probe; a probe file without an entry runs with its own settings."""


def probe_args(names):
    out = [f"probes=[{','.join(names)}]"]
    for name in names:
        keys = [*BUDGETS.get(name, []), "num_batches=2", "batch_size=16", "on_error=raise"]
        out += [f"probes.{name}.{key}" for key in keys]
    return out


def run_train(args, tmp_path, timeout):
    env = command_env(LSUITE_CHECK_PROBES="1")
    run_dir = tmp_path / "run"
    result = run_timed(
        [sys.executable, "-m", "lsuite.train", *TINY, *args, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=env,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir, result


def check_records(run_dir, names, world_size=1):
    """Every probe wrote schema-2 records without errors, labelled consistently, logged to CSV."""
    header = next(csv.reader((run_dir / "csv" / "metrics.csv").open()))
    assert "test/acc" in header
    for name in names:
        raws = jsonl.read_records(run_dir / "probes" / f"{name}.jsonl")
        assert raws, f"{name}: no records"
        for raw in raws:
            assert raw["schema"] == 2 and raw["result"] is not None, raw.get("error")
            assert raw["meta"]["probe"] == name and raw["meta"]["world_size"] == world_size
        assert any(column.startswith(f"probe/{name}/") for column in header), name
        epoch_of = {
            r["meta"]["step"]: r["meta"]["epoch"] for r in raws if r["meta"]["when"] == "epoch"
        }
        for raw in raws:  # item 8: a fit-end record says the epoch of the epoch end at its step
            meta = raw["meta"]
            if meta["when"] == "fit_end" and meta["step"] in epoch_of:
                assert meta["epoch"] == epoch_of[meta["step"]]
        fit_end = [r["meta"] for r in raws if r["meta"]["when"] == "fit_end"]
        assert all(m["epoch"] == 1 for m in fit_end), fit_end


@pytest.mark.slow
@pytest.mark.parametrize("name", PROBES)
def test_each_probe_alone(tmp_path, name):
    run_dir, _ = run_train([*CSV, *probe_args([name])], tmp_path, timeout=240)
    check_records(run_dir, [name])


@pytest.mark.slow
def test_all_probes_together(tmp_path):
    run_dir, result = run_train([*CSV_WANDB, *probe_args(PROBES)], tmp_path, timeout=360)
    check_records(run_dir, PROBES)
    for name in PROBES:
        assert f"probe:       {name}" in result.stdout
    assert list((run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.ddp
@pytest.mark.slow
def test_ddp_with_a_per_epoch_probe_does_not_hang(tmp_path):
    """Issue 10 item 1: rank 0's progress bar synced metrics while rank 1 was in the probe."""
    run_dir, _ = run_train(
        ["trainer=ddp_cpu", *CSV, *probe_args(["hessian_trace"])], tmp_path, timeout=240
    )
    check_records(run_dir, ["hessian_trace"], world_size=2)
    steps = [
        r["meta"]["step"] for r in jsonl.read_records(run_dir / "probes" / "hessian_trace.jsonl")
    ]
    assert steps == [3, 6]  # both epoch ends; fit end is the same step


@pytest.mark.ddp
@pytest.mark.slow
def test_ddp_with_all_probes(tmp_path):
    run_dir, _ = run_train(
        ["trainer=ddp_cpu", *CSV_WANDB, *probe_args(PROBES)], tmp_path, timeout=420
    )
    check_records(run_dir, PROBES, world_size=2)
