"""lsuite-train -m sweeps (basic and submitit_local launchers, failing jobs) and lsuite-report."""

import csv
import json
import os
import sys
from pathlib import Path

import pytest
from timed_run import run_timed

from lsuite.report.cli import main as report_main

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "data.batch_size=256",
    "probes=[hessian_trace]",
    "probes.hessian_trace.probe.num_matvecs=4",
]
GRID = ["optim.lr=0.05,0.1", "model.width=16,32"]


def run_sweep(args, sweep_dir, cwd):
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "OMP_NUM_THREADS": "1",  # jobs of tiny models share 2 cores
        "PYTHONPATH": str(HELPERS),
    }
    env.pop("MASTER_PORT", None)
    return run_timed(
        [sys.executable, "-m", "lsuite.train", "-m", *args, f"hydra.sweep.dir={sweep_dir}"],
        cwd=cwd,
        env=env,
        timeout=300,
    )


def job_dirs(sweep_dir):
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_report(sweep_dir, capsys):
    report_main([str(sweep_dir)])
    printed = capsys.readouterr().out
    with (sweep_dir / "report" / "runs.csv").open() as f:
        return list(csv.DictReader(f)), printed


@pytest.mark.parametrize(
    "launcher", ["basic", pytest.param("submitit_local", marks=pytest.mark.slow)]
)
def test_grid_sweep_then_report(launcher, tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    extra = ["logger=[csv,wandb]"] if launcher == "basic" else ["logger=[csv]"]
    if launcher == "submitit_local":
        extra += ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"]
    result = run_sweep([*TINY, *GRID, "callbacks=none", *extra], sweep_dir, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_dirs(sweep_dir)
    assert [p.name.split("_")[0] for p in jobs] == ["0", "1", "2", "3"]
    assert "model.width=16" in jobs[0].name and "optim.lr=0.05" in jobs[0].name
    for job in jobs:
        assert json.loads((job / "status.json").read_text())["status"] == "completed"
        assert (job / "probes" / "hessian_trace.jsonl").is_file()
    rows, printed = read_report(sweep_dir, capsys)
    assert "lsuite-report: 4 runs" in printed
    assert "note:" not in printed
    assert len(rows) == 4
    assert {(r["optim.lr"], r["model.width"]) for r in rows} == {
        ("0.05", "16"),
        ("0.05", "32"),
        ("0.1", "16"),
        ("0.1", "32"),
    }
    assert all(r["status"] == "completed" and float(r["hessian_trace/trace"]) for r in rows)
    for name in ("final_test.acc.png", "final_hessian_trace.trace.png"):
        assert (sweep_dir / "report" / name).stat().st_size > 0
    # One epoch: one measurement per run, so no figure "over training" (issue 14).
    assert not (sweep_dir / "report" / "training_hessian_trace.trace.png").exists()
    if launcher == "basic":
        # One offline wandb run per job, grouped by the sweep and named by the overrides.
        for job in jobs:
            [run_file] = job.glob("wandb/offline-run-*/run-*.wandb")
            data = run_file.read_bytes()
            status = json.loads((job / "status.json").read_text())
            assert sweep_dir.name.encode() in data  # group
            assert status["job"]["override_dirname"].encode() in data  # name
            assert b"overrides" in data and b"optim.lr=" in data  # config: overrides too
    else:
        assert (sweep_dir / ".submitit").is_dir()


def test_failed_and_diverged_jobs_are_recorded_and_the_others_finish(tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    args = [
        *TINY,
        "logger=[csv]",
        "callbacks=[divergence]",
        "optim.lr=0.05,inf",
        "+callbacks.fail._target_=failing_callback.RaiseOnFitStart",
        "+callbacks.fail.enabled=false,true",
    ]
    result = run_sweep(args, sweep_dir, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    found = {}
    for job in job_dirs(sweep_dir):
        status = json.loads((job / "status.json").read_text())
        overrides = status["job"]["overrides"]
        lr = next(o for o in overrides if o.startswith("optim.lr="))
        enabled = next(o for o in overrides if o.startswith("+callbacks.fail.enabled="))
        found[(lr, enabled.split("=")[1].lower())] = status
    assert {k: v["status"] for k, v in found.items()} == {
        ("optim.lr=0.05", "false"): "completed",
        ("optim.lr=0.05", "true"): "failed",
        ("optim.lr=inf", "false"): "diverged",
        ("optim.lr=inf", "true"): "failed",
    }
    failed = found[("optim.lr=0.05", "true")]
    assert failed["error"] == "RuntimeError: planted failure"
    assert "failing_callback.py" in failed["traceback"]
    diverged = found[("optim.lr=inf", "false")]
    assert diverged["error"].startswith("TrainingDiverged: training diverged:")
    assert "lsuite-train: job 1 failed" in result.stdout + result.stderr
    rows, printed = read_report(sweep_dir, capsys)
    assert sorted(r["status"] for r in rows) == ["completed", "diverged", "failed", "failed"]
    assert printed.count(": failed: RuntimeError: planted failure") == 2
    assert ": diverged: TrainingDiverged: training diverged" in printed
    assert (sweep_dir / "report" / "final_test.acc.png").is_file()
