"""experiment=generalization end to end: a 2-job sweep, then lsuite-report --correlate."""

import csv
import sys

import pytest
from timed_run import command_env, run_timed

from lsuite.report.correlation_report import write_correlation
from lsuite.report.runs import find_runs

TINY = [
    "optim=sgd,sam",
    "model.width=16",
    "data.batch_size=256",
    "++optim.lr=0.1",
    "++optim.weight_decay=0",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=true",
    # Reached after the first epoch: the threshold callback stops both runs there.
    "callbacks.train_loss_threshold.stopping_threshold=10",
    "probes.interpolation.num_batches=1",
    "probes.generalization.num_batches=1",
    "probes.generalization.probe.num_samples=2",
    "probes.generalization.probe.search_depth=2",
    "probes.generalization.probe.hessian_trace_matvecs=4",
    "probes.generalization.probe.hessian_max_iter=4",
    "probes.interpolation.probe.num_points=5",
]


@pytest.mark.slow
def test_generalization_sweep_then_correlate(tmp_path):
    env = command_env(OMP_NUM_THREADS="1")
    sweep = tmp_path / "sweep"
    trained = run_timed(
        [sys.executable, "-m", "lsuite.train", "-m", "experiment=generalization", *TINY,
         f"hydra.sweep.dir={sweep}"],
        timeout=300, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert len(jobs) == 2
    for job in jobs:
        with (job / "csv" / "metrics.csv").open() as f:
            epochs = {r["epoch"] for r in csv.DictReader(f) if r.get("train/loss_epoch")}
        assert epochs == {"0"}  # stopped at the threshold, not at max_epochs
        assert (job / "probes" / "interpolation.jsonl").is_file()
        assert (job / "probes" / "generalization.jsonl").is_file()
    reported = run_timed(
        [sys.executable, "-m", "lsuite.report.cli", str(sweep), "--correlate", "gap",
         "--converged-below", "10"],
        timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert reported.returncode == 0, reported.stderr[-3000:]
    out = reported.stdout
    assert "correlation with gap: 2 of 2 runs used" in out
    assert "granulated over: optim" in out
    assert "monotonic linear interpolation" in out
    assert "optimisation/steps_to_loss_0.1" in out  # never reached: not ranked, and named
    with (sweep / "report" / "correlation_gap.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows, out
    assert {"measure", "tau", "runs", "psi", "psi_runs", "tau_optim"} <= set(rows[0])
    assert all(r["runs"] == "2" for r in rows)
    assert any(r["measure"].startswith("generalization/") for r in rows), out
    assert (sweep / "report" / "mli.csv").is_file()
    # The criterion's default (train/loss < 0.01) leaves both runs out, and says so.
    strict = write_correlation(find_runs(sweep), tmp_path / "strict", "gap")
    assert "0 of 2 runs used" in strict.lines[0]
    assert "left out, train/loss >= 0.01: 2" in strict.lines[1]
