"""Both subspace modules through the real lsuite-train (and lsuite-probe), alone and under DDP.

Default callbacks (progress bar on), ``test=true``, probes checked for side effects
(``LSUITE_CHECK_PROBES=1``); every run has a hard timeout.
"""

import csv
import json
import sys

import pytest
from timed_run import command_env, run_timed

from lsuite.results import jsonl

TINY = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=1",
    "model.width=16",
    "model.depth=1",
    "data.batch_size=32",
    "logger=[csv]",
]
PROBE = [
    "probes=[hessian_trace]",
    "probes.hessian_trace.probe.num_matvecs=4",
    "probes.hessian_trace.probe.rel_stderr=null",
    "probes.hessian_trace.num_batches=2",
    "probes.hessian_trace.on_error=raise",
]


def _train(tmp_path, *args, timeout=300):
    run_dir = tmp_path / "run"
    result = run_timed(
        [sys.executable, "-m", "lsuite.train", *TINY, *args, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=command_env(),
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "completed"
    return run_dir, status


def _csv_columns(run_dir):
    return next(csv.reader((run_dir / "csv" / "metrics.csv").open()))


@pytest.mark.slow
def test_subspace_line_trains_logs_the_line_and_loads_in_lsuite_probe(tmp_path):
    run_dir, status = _train(tmp_path, "module=subspace", "module.eval_points=5", *PROBE)
    assert "test/acc" in status["metrics"]
    points = json.loads((run_dir / "subspace.json").read_text())["points"]
    assert [p["point"] for p in points] == [f"alpha={a:.2f}" for a in (0, 0.25, 0.5, 0.75, 1)]
    assert all(0 <= p["val_acc"] <= 1 for p in points)
    columns = _csv_columns(run_dir)
    assert {"subspace/alpha=0.50/val_acc", "train/cosine_epoch", "test/acc"} <= set(columns)
    records = jsonl.read_probe_records(run_dir / "probes" / "hessian_trace.jsonl")
    assert records and all(r.error is None for r in records)

    probed = run_timed(
        [sys.executable, "-m", "lsuite.probe", "--no-progress", str(run_dir), "--ckpt", "last",
         "probes.hessian_trace.probe.num_matvecs=4"],
        cwd=tmp_path,
        env=command_env(),
        timeout=300,
    )  # fmt: skip
    assert probed.returncode == 0, probed.stderr[-3000:]
    after = jsonl.read_probe_records(run_dir / "probes" / "hessian_trace.jsonl")
    from_checkpoint = [r for r in after if r.meta.get("checkpoint")]
    assert from_checkpoint and all(r.error is None for r in from_checkpoint)
    assert from_checkpoint[-1].result.trace == pytest.approx(records[-1].result.trace, rel=1.0)


@pytest.mark.slow
def test_random_subspace_trains_with_fastfood(tmp_path):
    _, status = _train(
        tmp_path, "module=random_subspace", "module.dim=64", "optim=adam", "optim.lr=0.1", *PROBE
    )
    assert status["metrics"]["test/acc"] > 0.2  # 6 steps in 64 dimensions learn something


@pytest.mark.ddp
@pytest.mark.slow
@pytest.mark.parametrize(
    "module", [["module=subspace", "module.num_vertices=3"], ["module=random_subspace"]]
)
def test_modules_train_under_ddp(tmp_path, module):
    run_dir, status = _train(tmp_path, "trainer=ddp_cpu", *module, timeout=420)
    assert "test/acc" in status["metrics"]
    if "module=subspace" in module:
        points = json.loads((run_dir / "subspace.json").read_text())["points"]
        assert points[-1]["point"] == "center"
