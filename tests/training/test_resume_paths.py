"""resume=auto|PATH: which checkpoint, which run directory, and the command line it implies."""

import logging
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from lsuite.config.resume import (
    checkpoint_of,
    resume_checkpoint,
    run_dir_of,
    with_implied_run_dir,
)
from lsuite.errors import ConfigError


@pytest.fixture(name="run")
def _run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "checkpoints" / "best-epoch001.ckpt").write_bytes(b"x")
    return run


def no_trainer():
    return SimpleNamespace(checkpoint_callbacks=[])


def test_paths_name_the_checkpoint_and_its_run_directory(run):
    last = run / "checkpoints" / "last.ckpt"
    for value in (run, run / "checkpoints", last):
        assert checkpoint_of(value) == last
        assert run_dir_of(value) == run
    assert checkpoint_of(run / "checkpoints" / "best-epoch001.ckpt").name == "best-epoch001.ckpt"


def test_a_path_without_a_checkpoint_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"^resume: got .*; expected auto, null, a checkpoint"):
        checkpoint_of(tmp_path / "nothing")


def test_auto_takes_the_run_directorys_last_checkpoint_or_starts_fresh(run, tmp_path, caplog):
    cfg = OmegaConf.create({"resume": "auto", "run_dir": str(run)})
    assert resume_checkpoint(cfg, no_trainer()) == str(run / "checkpoints" / "last.ckpt")
    fresh = OmegaConf.create({"resume": "auto", "run_dir": str(tmp_path / "new")})
    with caplog.at_level(logging.INFO, logger="lsuite"):
        assert resume_checkpoint(fresh, no_trainer()) is None
    assert "resume=auto: no checkpoint in" in caplog.text and "starting fresh" in caplog.text
    assert resume_checkpoint(OmegaConf.create({"resume": None, "run_dir": "x"}), None) is None


def test_resume_path_implies_its_run_directory_on_the_command_line(run):
    args = ["optim.lr=0.1", f"resume={run / 'checkpoints' / 'last.ckpt'}"]
    assert with_implied_run_dir(args) == [*args, f"hydra.run.dir={run}"]
    odd = run.parent / "a run, with=odd"
    (odd / "checkpoints").mkdir(parents=True)
    (odd / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert with_implied_run_dir([f"resume={odd}"])[-1] == f"hydra.run.dir='{odd}'"


@pytest.mark.parametrize(
    "args",
    [
        ["resume=auto"],
        ["resume=null"],
        ["optim.lr=0.1"],
        ["-m", "resume=RUN", "optim.lr=0.1,0.2"],
        ["resume=RUN", "hydra.run.dir=elsewhere"],
    ],
)
def test_nothing_is_implied_for_auto_multirun_or_a_given_run_dir(args, run):
    args = [a.replace("RUN", str(run)) for a in args]
    assert with_implied_run_dir(args) == args


def test_a_missing_resume_path_fails_on_the_command_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^resume: got"):
        with_implied_run_dir([f"resume={tmp_path / 'nope.ckpt'}"])
