"""module=simplex through the real lsuite-train (default callbacks, test=true), DDP, lsuite-probe.

Vertices are state dicts of default-config MLPs written in-process (cheaper than training runs;
any point spec loads the same way).
"""

import csv
import math
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
    "module=simplex",
    "module.free_vertices=1",
    "module.ensemble_size=2",
    "probes=curve",
    "probes.curve.probe.simplex_resolution=2",
    "probes.curve.on_error=raise",
]


def _vertices(directory, count):
    """``count`` differently initialised default-config MLPs saved as state dicts."""
    paths = []
    for seed in range(count):
        torch.manual_seed(seed)
        net = MLP(input_shape=(1, 8, 8), num_classes=10, width=16, depth=1)
        paths.append(directory / f"vertex{seed}.pt")
        torch.save(net.state_dict(), paths[-1])
    return f"module.vertices=[{','.join(map(str, paths))}]"


def _run(tmp_path, module, *args, timeout=300):
    result = run_timed(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=tmp_path,
        env=command_env(helpers=True),
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]


def _check(result, num_fixed):
    """The N-way barrier fields of a simplex record are present and finite."""
    assert result["kind"] == "simplex" and result["skipped"] is None
    vertices = num_fixed + 1
    assert all(len(row) == vertices for row in result["coordinates"])
    assert result["fixed"] == list(range(num_fixed))
    face = [result["coordinates"][i] for i in result["face_rows"]]
    assert face and all(row[-1] == 0 for row in face)
    for split in ("train", "val"):
        for key in ("loss_barrier", "error_barrier", "line_loss_barrier", "line_error_barrier"):
            assert math.isfinite(result[key][split]) and result[key][split] >= 0, key
        for key in ("loss_max", "error_max", "line_loss_max", "line_error_max"):
            assert math.isfinite(result[key][split]), key
        assert len(result["loss"][split]) == len(result["coordinates"])
        assert len(result["line_loss"][split]) == len(face)
        # the face is part of the simplex's grid: its maximum is no larger than the whole one
        assert result["line_loss_max"][split] <= result["loss_max"][split] + 1e-9


def _records(run_dir, world_size):
    header = next(csv.reader((run_dir / "csv" / "metrics.csv").open()))
    expected = {"test/acc", "test/error_max", "test/line_error_max", "test/ensemble_acc"}
    assert expected <= set(header)
    assert {"val/loss_max", "probe/curve/val_loss_barrier"} <= set(header)
    assert any(key.startswith("train/log_volume") for key in header)
    raws = jsonl.read_records(run_dir / "probes" / "curve.jsonl")
    assert raws and all(r["result"] is not None for r in raws), raws[-1].get("error")
    assert raws[-1]["meta"]["world_size"] == world_size
    return raws


@pytest.mark.slow
def test_simplex_trains_and_its_checkpoint_loads_in_lsuite_probe(tmp_path):
    run_dir = tmp_path / "run"
    _run(
        tmp_path,
        "lsuite.train",
        *TINY,
        _vertices(tmp_path, 2),
        f"hydra.run.dir={run_dir}",
    )
    trained = _records(run_dir, world_size=1)
    _check(trained[-1]["result"], num_fixed=2)
    assert list((run_dir / "plots").glob("curve_step*.png"))
    _run(
        tmp_path,
        "lsuite.probe",
        "--no-progress",
        run_dir,
        "probes=curve",
        "probes.curve.probe.simplex_resolution=2",
        "--ckpt",
        "last",
    )
    raws = jsonl.read_records(run_dir / "probes" / "curve.jsonl")
    again = [r for r in raws if r["meta"].get("source") != "callback"]
    assert again, "lsuite-probe wrote no curve record"
    _check(again[-1]["result"], num_fixed=2)
    # the fixed vertices are frozen: equal in every checkpoint
    for split in ("train", "val"):
        measured, fit_end = again[-1]["result"], trained[-1]["result"]
        for vertex in range(2):
            row = [1.0 if i == vertex else 0.0 for i in range(3)]
            index = measured["coordinates"].index(row)
            assert fit_end["coordinates"][index] == row
            assert measured["loss"][split][index] == pytest.approx(
                fit_end["loss"][split][index], rel=1e-6
            )


@pytest.mark.ddp
@pytest.mark.slow
def test_n_solution_simplex_trains_under_ddp_with_equal_ranks(tmp_path):
    """Fort & Jastrzebski's N-solution subspace: 3 fixed solutions and one trained vertex."""
    run_dir, weights = tmp_path / "run", tmp_path / "weights"
    _run(
        tmp_path,
        "lsuite.train",
        *TINY,
        _vertices(tmp_path, 3),
        "trainer=ddp_cpu",
        "+callbacks.rank_weights._target_=rank_weights.RankWeightsDump",
        f"+callbacks.rank_weights.directory={weights}",
        f"hydra.run.dir={run_dir}",
        timeout=420,
    )
    raws = _records(run_dir, world_size=2)
    _check(raws[-1]["result"], num_fixed=3)
    rank0, rank1 = torch.load(weights / "rank0.pt"), torch.load(weights / "rank1.pt")
    assert rank0.keys() == rank1.keys() and "free_points" in rank0
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
