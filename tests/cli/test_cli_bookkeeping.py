"""lsuite-train's bookkeeping through the real command: status on Ctrl-C, train.log, the run
name, a quiet console, the closing summary, and one-line errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from timed_run import run_timed

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
QUICK = ["trainer.max_epochs=1", "trainer.enable_model_summary=false"]

# Messages a default run printed before, none of which says anything about the run.
NOISE = (
    "The anonymous setting has no effect",  # wandb, from Lightning's WandbLogger
    "litlogger",  # Lightning's advertising tip
    "litmodels",
    "LeafSpec",  # torch's deprecation, from Lightning's _pytree helper
    "sync_dist=True",  # Lightning's advice about lsuite's own self.log calls
)


def command(args):
    return [sys.executable, "-m", "lsuite.train", *args]


def environment():
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(HELPERS)}
    env.pop("WANDB_SILENT", None)  # wandb's own warnings must not be hidden by the test
    env.pop("MASTER_PORT", None)
    return env


def run_cli(args, cwd, timeout=300):
    return run_timed(command(args), cwd=cwd, env=environment(), timeout=timeout)


@pytest.mark.slow
def test_default_run_is_quiet_logs_to_train_log_and_has_a_name(tmp_path):
    """The default run, nothing overridden but its directory (progress bar on, test=true)."""
    run_dir = tmp_path / "quiet-default-run"
    result = run_cli([f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr[-3000:]
    for message in NOISE:
        assert message not in output, message
    # No warning of any library either (warnings.warn and Lightning's rank_zero_warn print
    # "<file>.py:<line>: <message>").
    assert not re.search(r"\.py:\d+: ", output), re.search(r".*\.py:\d+: .*", output).group()
    # train.log keeps the console log: Lightning's messages and the closing summary.
    log = (run_dir / "train.log").read_text()
    assert "Seed set to 0" in log
    assert "`Trainer.fit` stopped" in log
    assert f"lsuite: run finished in {run_dir}" in log
    assert "test/acc=" in log
    # The console shows the messages once, without a log prefix.
    assert result.stdout.count("lsuite: run finished in") == 1
    assert "[lsuite][INFO]" not in output
    # The wandb run is named after the run directory (no overrides to name it by).
    config = (run_dir / "config.yaml").read_text()
    assert "run_name: quiet-default-run" in config
    assert "name: quiet-default-run" in config.split("wandb:", 1)[1]
    (wandb_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    assert b"quiet-default-run" in wandb_file.read_bytes()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "completed"


def test_ctrl_c_records_interrupted_and_keeps_what_was_written(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "trainer.max_epochs=10000",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        "probes=hessian_trace",
        "probes.hessian_trace.probe.num_matvecs=4",
        f"hydra.run.dir={run_dir}",
    ]
    process = subprocess.Popen(
        command(args),
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        last = run_dir / "checkpoints" / "last.ckpt"
        while not last.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert last.exists(), "training never reached the end of an epoch"
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err[-3000:]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert "KeyboardInterrupt" in status["error"]
    assert f"lsuite-train: interrupted; status recorded in {run_dir / 'status.json'}" in err
    assert last.is_file()
    assert (run_dir / "csv" / "metrics.csv").is_file()
    records = (run_dir / "probes" / "hessian_trace.jsonl").read_text().splitlines()
    assert records and all(json.loads(line) for line in records)


def test_fast_dev_run_summary_lists_only_files_that_exist(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        *QUICK,
        "trainer.fast_dev_run=true",
        "logger=csv",
        "probes=hessian_trace",
        f"hydra.run.dir={run_dir}",
    ]
    result = run_cli(args, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lsuite: run finished in" in result.stdout
    assert not (run_dir / "probes" / "hessian_trace.jsonl").exists()
    assert "probe:" not in result.stdout
    assert "hessian_trace.jsonl" not in result.stdout
    # With overrides, the run is named by them.
    config = (run_dir / "config.yaml").read_text()
    assert "run_name: logger=csv,probes=hessian_trace,trainer.enable_model_summary=false," in config


def test_config_error_while_building_is_one_line_exit_2(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        *QUICK,
        "logger=none",
        "+callbacks.boom._target_=config_error_at_build.fail",
        f"hydra.run.dir={run_dir}",
    ]
    result = run_cli(args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == (
        "lsuite-train: error: callbacks.boom.planted.key: got 1; "
        "expected a value this test never accepts"
    )
    assert "lsuite-train: error" not in result.stdout
    assert "[ERROR]" not in result.stdout + result.stderr
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"
    assert not (run_dir / "checkpoints").exists()


def test_flat_minima_is_a_sweep_by_itself(tmp_path):
    """Without -m, experiment=flat_minima runs its four jobs, not one of them."""
    result = run_cli(["experiment=flat_minima", "--cfg", "hydra"], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mode: MULTIRUN" in result.stdout
    assert "optim: sgd,sam" in result.stdout
    assert "callbacks: default,swa" in result.stdout


@pytest.mark.slow
def test_flat_minima_without_m_runs_its_four_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "experiment=flat_minima",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "test=false",
        # The experiment's probes, made cheap.
        "probes.hessian_trace.probe.num_matvecs=3",
        "probes.hessian_eigenvalues.probe.max_iter=4",
        "probes.sharpness.probe.steps=1",
        "probes.sharpness.probe.num_samples=2",
        f"hydra.sweep.dir={sweep}",
    ]
    result = run_cli(args, cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if (p / "status.json").is_file())
    assert len(jobs) == 4, jobs
    for job in jobs:
        assert json.loads((sweep / job / "status.json").read_text())["status"] == "completed"
    assert {",".join(j.split("_", 1)[1].split(",")[:2]) for j in jobs} == {
        "callbacks=default,optim=sgd",
        "callbacks=default,optim=sam",
        "callbacks=swa,optim=sgd",
        "callbacks=swa,optim=sam",
    }
