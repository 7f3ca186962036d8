"""run_job: status.json for completed, failed and diverged jobs; multirun goes on, a run exits."""

import json

import pytest
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only

from lsuite.callbacks.divergence import TrainingDiverged
from lsuite.config.job_status import all_losses_finite, read_status, run_job
from lsuite.errors import ConfigError


def status(tmp_path):
    return read_status(tmp_path / "run")


def test_completed_job_records_metrics_and_returns_test_acc(job, tmp_path):
    cfg = job(RunMode.MULTIRUN)
    seen = []

    def task(c):
        seen.append(status(tmp_path)["status"])
        return {"test/acc": 0.75, "test/loss": 0.5}

    assert run_job(task, cfg) == 0.75
    assert seen == ["running"]
    found = status(tmp_path)
    assert found["status"] == "completed"
    assert found["metrics"] == {"test/acc": 0.75, "test/loss": 0.5}
    assert found["job"]["num"] == 3
    assert found["job"]["overrides"] == ["optim.lr=0.5"]
    assert "error" not in found


def raise_(error):
    def task(cfg):
        raise error

    return task


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("planted failure"), "failed"),
        (TrainingDiverged("training diverged: nan", step=4, value=float("nan")), "diverged"),
        (ConfigError("data.data_dir: got 'x'"), "failed"),
    ],
    ids=["runtime_error", "training_diverged", "config_error"],
)
def test_multirun_job_that_raises_is_recorded_and_the_sweep_goes_on(job, tmp_path, error, expected):
    assert run_job(raise_(error), job(RunMode.MULTIRUN)) is None
    found = status(tmp_path)
    assert found["status"] == expected
    assert found["error"] == f"{type(error).__name__}: {error}"
    assert str(error) in found["traceback"]
    assert "Traceback" in found["traceback"]


def test_single_run_that_raises_exits_non_zero(job, tmp_path):
    cfg = job(RunMode.RUN)
    with pytest.raises(RuntimeError, match="planted failure"):
        run_job(raise_(RuntimeError("planted failure")), cfg)
    assert status(tmp_path)["status"] == "failed"
    with pytest.raises(SystemExit) as exit_info:
        run_job(raise_(ConfigError("optim.lr: got 0")), cfg)
    assert exit_info.value.code == 2


def test_non_finite_final_loss_is_diverged(job, tmp_path):
    metrics = {"test/acc": 0.1, "test/loss": float("nan")}
    assert run_job(lambda c: metrics, job(RunMode.MULTIRUN)) is None
    found = status(tmp_path)
    assert found["status"] == "diverged"
    assert found["metrics"]["test/loss"] == "nan"
    json.dumps(found, allow_nan=False)  # strict JSON
    with pytest.raises(SystemExit) as exit_info:
        run_job(lambda c: metrics, job(RunMode.RUN))
    assert exit_info.value.code == 1


def test_only_rank_zero_writes(job, tmp_path, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    run_job(lambda c: {"test/acc": 1.0}, job(RunMode.MULTIRUN))
    assert status(tmp_path) is None


def test_all_losses_finite():
    assert all_losses_finite({"train/loss": 1.0, "val/acc": float("nan")})
    assert not all_losses_finite({"train/objective": float("inf")})
    assert not all_losses_finite({"test/loss": float("nan")})


@pytest.mark.parametrize("mode", [RunMode.RUN, RunMode.MULTIRUN])
def test_ctrl_c_is_recorded_as_interrupted_and_ends_the_program(job, tmp_path, capsys, mode):
    """A sweep stops too: Ctrl-C means the user wants the command to end."""
    with pytest.raises(SystemExit) as exit_info:
        run_job(raise_(KeyboardInterrupt()), job(mode))
    assert exit_info.value.code == 130
    found = status(tmp_path)
    assert found["status"] == "interrupted"
    assert found["error"].startswith("KeyboardInterrupt")
    assert capsys.readouterr().err.strip() == (
        f"lsuite-train: interrupted; status recorded in {tmp_path / 'run' / 'status.json'}"
    )


def test_config_error_in_a_single_run_is_one_plain_line_on_stderr(job, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_job(raise_(ConfigError("optim.lr: got 0; expected a number > 0")), job(RunMode.RUN))
    captured = capsys.readouterr()
    assert captured.err == "lsuite-train: error: optim.lr: got 0; expected a number > 0\n"
