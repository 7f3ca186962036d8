"""``report=true``: the Hydra callback builds the report when a sweep (or a run) ends."""

import sys

import pytest
from omegaconf import OmegaConf
from timed_run import command_env, run_timed

from lsuite.config.report_callback import BuildReport
from lsuite.errors import ConfigError

TINY = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "model.width=16",
    "model.depth=1",
    "data.batch_size=64",
    "logger=[csv]",
    "probes=[hessian_trace]",
    "probes.hessian_trace.probe.num_matvecs=4",
    "probes.hessian_trace.probe.rel_stderr=null",
    "probes.hessian_trace.num_batches=1",
]
"""2 epochs of 2 steps, default callbacks (progress bar on), test=true."""


@pytest.mark.slow
def test_sweep_with_report_true_builds_the_report(tmp_path):
    sweep = tmp_path / "sweep"
    env = command_env(OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "lsuite.train", "-m", *TINY, "optim.lr=0.05,0.1"]
    command += ["report=true", f"hydra.sweep.dir={sweep}"]
    result = run_timed(command, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    page = (sweep / "report" / "index.html").read_text()
    assert "Swept: <code>optim.lr</code> (0.05, 0.1) (x axis)." in page
    assert "2 runs: 2 completed." in page
    for name in ("final_test.acc.png", "final_hessian_trace.trace.png", "details.html"):
        assert (sweep / "report" / name).stat().st_size > 0
    assert (sweep / "report" / "training_hessian_trace.trace.png").is_file()  # 2 epochs
    assert "no records" not in page
    assert "report of 2 runs" in result.stdout + result.stderr


def test_callback_reports_a_single_run_and_checks_the_key(tmp_path, monkeypatch):
    run = tmp_path / "sweep" / "0_optim.lr=0.1"
    run.mkdir(parents=True)
    (run / "status.json").write_text('{"status": "completed", "metrics": {"test/acc": 0.5}}')
    config = OmegaConf.create({"report": True, "hydra": {"runtime": {"output_dir": str(run)}}})
    sweep = OmegaConf.create({"report": True, "hydra": {"sweep": {"dir": str(run.parent)}}})
    monkeypatch.setenv("LOCAL_RANK", "1")  # a process Lightning started for DDP rank 1
    BuildReport().on_run_end(config)
    BuildReport().on_multirun_end(sweep)
    assert not (run / "report").exists() and not (run.parent / "report").exists()
    monkeypatch.delenv("LOCAL_RANK")
    BuildReport().on_multirun_end(OmegaConf.merge(sweep, {"report": False}))  # off
    assert not (run.parent / "report").exists()
    BuildReport().on_run_end(config)
    assert (run / "report" / "index.html").is_file()
    with pytest.raises(ConfigError, match="report: got 'yes'; expected true or false"):
        BuildReport().on_multirun_start(OmegaConf.create({"report": "yes"}))
