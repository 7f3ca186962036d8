"""The ensemble probe through the real lsuite-train and lsuite-probe (1 and 2 processes).

One training run keeps every epoch's checkpoint and measures its trajectory ensemble at fit end;
lsuite-probe then measures the ensemble of the first two epoch checkpoints and last.ckpt (three
members), which must equal the training record, also with two processes.
"""

import json
import sys

import pytest
from timed_run import command_env, run_timed

TRAIN = [
    "probes=[ensemble]",
    "callbacks=[default,trajectory]",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "model.width=16",
    "model.depth=1",
    "data.batch_size=32",
    "logger=[csv]",
    "probes.ensemble.num_batches=2",
    "probes.ensemble.batch_size=16",
    "probes.ensemble.on_error=raise",
]


def _run(module, args, cwd, timeout):
    result = run_timed(
        [sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=command_env(), timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _records(run_dir):
    lines = (run_dir / "probes" / "ensemble.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble_cli")
    run_dir = root / "trained"
    _run("lsuite.train", [*TRAIN, f"hydra.run.dir={run_dir}"], root, timeout=400)
    return run_dir


def _probe_args(run_dir, *extra):
    firsts = sorted((run_dir / "checkpoints").glob("step*.ckpt"))[:2]
    points = ",".join(str(p) for p in firsts)
    return [
        "--no-progress",
        run_dir,
        "probes=[ensemble]",
        f"probes.ensemble.probe.points=[{points}]",
        "probes.ensemble.num_batches=2",
        "probes.ensemble.batch_size=16",
        *extra,
    ]


def _same(got, want):
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


@pytest.mark.slow
def test_train_then_probe_three_checkpoints(trained):
    (fit,) = _records(trained)
    assert fit["meta"]["when"] == "fit_end"
    assert fit["result"]["labels"] == ["epoch:0", "epoch:1", "epoch:2"]
    assert list((trained / "plots").glob("ensemble_step*_ensemble.png"))
    _run("lsuite.probe", _probe_args(trained), trained.parent, timeout=300)
    measured = _records(trained)[-1]
    assert measured["meta"]["source"] == "lsuite-probe"
    result = measured["result"]
    assert len(result["labels"]) == 3 and result["labels"][-1] == "current"
    assert result["groups"] == ["trained", "trained", "run"]  # checkpoints: their run directory
    _same(measured["scalars"], fit["scalars"])  # the same three weights as the fit-end record


@pytest.mark.ddp
@pytest.mark.slow
def test_probe_two_processes_equal_one(trained):
    (fit,) = [r for r in _records(trained) if r["meta"]["when"] == "fit_end"]
    args = _probe_args(trained, "trainer.devices=2", "trainer.accelerator=cpu")
    _run("lsuite.probe", args, trained.parent, timeout=400)
    measured = _records(trained)[-1]
    assert measured["meta"]["world_size"] == 2
    _same(measured["scalars"], fit["scalars"])
