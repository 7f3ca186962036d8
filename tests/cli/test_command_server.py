"""The tests' forked commands (`timed_run`) behave as real ``python -m lsuite...`` processes."""

import os
import sys
import time
from pathlib import Path

import pytest
from timed_run import run_timed

TRAIN = [sys.executable, "-m", "lsuite.train"]


def _env(**extra):
    return {**os.environ, "WANDB_MODE": "offline", **extra}


def test_forked_and_real_commands_print_the_same_and_exit_the_same(tmp_path):
    args = ["--cfg", "job", "probes=hessian_trace", "model.width=7"]
    forked = run_timed([*TRAIN, *args], cwd=tmp_path, env=_env(), timeout=120)
    real = run_timed([*TRAIN, *args], cwd=tmp_path, env=_env(LSUITE_TEST_FORK="0"), timeout=120)
    assert forked.returncode == real.returncode == 0, forked.stderr[-2000:]
    assert forked.stdout == real.stdout and "width: 7" in forked.stdout
    bad = ["trainer.max_epochs=oops"]
    forked = run_timed([*TRAIN, *bad], cwd=tmp_path, env=_env(), timeout=120)
    real = run_timed([*TRAIN, *bad], cwd=tmp_path, env=_env(LSUITE_TEST_FORK="0"), timeout=120)
    assert forked.returncode == real.returncode == 2
    assert forked.stderr == real.stderr and "trainer.max_epochs: got 'oops'" in forked.stderr


MARK = """
import os
import sys

from lightning.pytorch import Callback


class Mark(Callback):
    def __init__(self, name):
        self.name = name

    def on_fit_start(self, trainer, module):
        line = f"{os.getcwd()} {os.environ['LSUITE_TEST_MARK']} {sys.argv[1:3]}"
        with open(self.name, "w") as out:
            out.write(line)
"""


def test_a_forked_command_sees_its_cwd_environment_and_pythonpath(tmp_path):
    """A callback from PYTHONPATH and one from the working directory are found and run there."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "mark_from_path.py").write_text(MARK)
    (tmp_path / "mark_from_cwd.py").write_text(MARK)
    env = _env(PYTHONPATH=str(tmp_path / "lib"), LSUITE_TEST_MARK="seen")
    args = [
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "test=false",
        "logger=csv",
        "+callbacks.a._target_=mark_from_path.Mark",
        "+callbacks.a.name=a.txt",
        "+callbacks.b._target_=mark_from_cwd.Mark",
        "+callbacks.b.name=b.txt",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    done = run_timed([*TRAIN, *args], cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("a.txt", "b.txt"):  # relative to the command's cwd (Hydra does not chdir)
        assert (tmp_path / name).read_text() == f"{tmp_path} seen {args[:2]}"


def test_a_hanging_forked_command_is_killed_at_the_timeout(tmp_path):
    hang = ["+callbacks.nap._target_=time.sleep", "+callbacks.nap._args_=[120]"]
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="timed out after 3 s"):
        run_timed([*TRAIN, *hang, "trainer.max_epochs=1"], cwd=tmp_path, env=_env(), timeout=3)
    assert time.monotonic() - start < 60
    # the server is free again: the next command runs
    done = run_timed([*TRAIN, "--help"], cwd=tmp_path, env=_env(), timeout=120)
    assert done.returncode == 0 and "== Configuration groups ==" in done.stdout


def test_an_edited_lsuite_source_restarts_the_server(tmp_path):
    """A command after an edit runs the edited code: the server that imported it is replaced."""
    import timed_run

    import lsuite.errors

    run_timed([*TRAIN, "--help"], cwd=tmp_path, env=_env(), timeout=120)
    before = timed_run._instance
    source = Path(lsuite.errors.__file__)
    times = source.stat()
    try:
        os.utime(source, ns=(times.st_atime_ns, times.st_mtime_ns + 1_000_000_000))
        done = run_timed([*TRAIN, "--help"], cwd=tmp_path, env=_env(), timeout=300)
    finally:
        os.utime(source, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert done.returncode == 0, done.stderr[-2000:]
    assert timed_run._instance is not before and not before.alive()
