"""module=curve through the real lsuite-train (default callbacks, test=true) and lsuite-probe."""

import csv
import sys

import pytest
import torch
from timed_run import command_env, run_timed
from tiny_run import TINY_RUN

from lsuite.model.mlp import MLP
from lsuite.results import jsonl

TINY = [
    *TINY_RUN,
    "data.batch_size=32",
    "logger=[csv]",
    "module=curve",
    "probes=curve",
    "probes.curve.probe.num_points=5",
    "probes.curve.on_error=raise",
]


def _ends(directory):
    """Two default-config MLPs (digits, width 16, depth 1) saved as state dicts."""
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = MLP(input_shape=(1, 8, 8), num_classes=10, width=16, depth=1)
        paths.append(directory / f"end{seed}.pt")
        torch.save(net.state_dict(), paths[-1])
    return [f"module.start={paths[0]}", f"module.end={paths[1]}"]


def _train(tmp_path, *extra, timeout=300):
    run_dir = tmp_path / "run"
    args = [*TINY, *_ends(tmp_path), *extra, f"hydra.run.dir={run_dir}"]
    result = run_timed(
        [sys.executable, "-m", "lsuite.train", *args],
        cwd=tmp_path,
        env=command_env(),
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir


def _check(run_dir, world_size):
    header = next(csv.reader((run_dir / "csv" / "metrics.csv").open()))
    assert {"test/acc", "test/error_max", "test/line_error_max", "val/loss_max"} <= set(header)
    assert "probe/curve/val_loss_max" in header
    raws = jsonl.read_records(run_dir / "probes" / "curve.jsonl")
    assert raws and all(r["result"] is not None for r in raws), raws[-1].get("error")
    result = raws[-1]["result"]
    assert result["kind"] == "bezier" and result["skipped"] is None
    assert raws[-1]["meta"]["world_size"] == world_size
    return result


@pytest.mark.slow
def test_curve_trains_and_its_checkpoint_loads_in_lsuite_probe(tmp_path):
    run_dir = _train(tmp_path)
    trained = _check(run_dir, world_size=1)
    assert list((run_dir / "plots").glob("curve_step*_curve.png"))
    probed = run_timed(
        [
            sys.executable,
            "-m",
            "lsuite.probe",
            "--no-progress",
            str(run_dir),
            "probes=curve",
            "probes.curve.probe.num_points=5",
            "--ckpt",
            "last",
        ],
        cwd=tmp_path,
        env=command_env(),
        timeout=300,
    )
    assert probed.returncode == 0, probed.stderr[-4000:]
    raws = jsonl.read_records(run_dir / "probes" / "curve.jsonl")
    again = [r for r in raws if r["meta"].get("source") != "callback"]
    assert again and again[-1]["result"]["kind"] == "bezier"
    # the ends are frozen: equal in every checkpoint; the whole curve where the steps agree
    # (last.ckpt is rewritten only when the best one is, Lightning's save_last=True)
    for split in ("train", "val"):
        measured, fit_end = again[-1]["result"]["loss"][split], trained["loss"][split]
        assert measured[0] == pytest.approx(fit_end[0], rel=1e-6)
        assert measured[-1] == pytest.approx(fit_end[-1], rel=1e-6)
        if again[-1]["meta"]["step"] == raws[0]["meta"]["step"]:
            torch.testing.assert_close(measured, fit_end, rtol=1e-5, atol=1e-6)


@pytest.mark.ddp
@pytest.mark.slow
def test_curve_trains_under_ddp(tmp_path):
    run_dir = _train(tmp_path, "trainer=ddp_cpu", timeout=420)
    _check(run_dir, world_size=2)
