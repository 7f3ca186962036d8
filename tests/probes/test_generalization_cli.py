"""lsuite-train probes=generalization, then lsuite-probe on its checkpoint: the same record."""

import json
import os
import sys

import pytest
from timed_run import run_timed
from tiny_run import TINY_RUN

TRAIN = [
    *TINY_RUN,
    "logger=[csv]",
    "probes=[generalization]",
    "probes.generalization.on_error=raise",
    "probes.generalization.probe.hessian_trace_matvecs=6",
    "probes.generalization.probe.hessian_max_iter=6",
]


def env():
    out = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    out["LSUITE_CHECK_PROBES"] = "1"
    out.pop("MASTER_PORT", None)
    return out


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_probe_of_the_last_checkpoint_equals_the_fit_end_record(tmp_path):
    run = tmp_path / "run"
    trained = run_timed(
        [sys.executable, "-m", "lsuite.train", *TRAIN, f"hydra.run.dir={run}"],
        cwd=tmp_path,
        env=env(),
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    probed = run_timed(
        [sys.executable, "-m", "lsuite.probe", "--no-progress", str(run)],
        cwd=tmp_path,
        env=env(),
        timeout=300,
    )
    assert probed.returncode == 0, probed.stderr[-3000:]
    recs = records(run / "probes" / "generalization.jsonl")
    fit_end = [r for r in recs if r["meta"]["when"] == "fit_end"]
    again = [r for r in recs if r["meta"].get("source") == "lsuite-probe"]
    assert len(fit_end) == 1 and len(again) == 1
    assert again[0]["meta"]["step"] == fit_end[0]["meta"]["step"]
    first, second = fit_end[0]["result"], again[0]["result"]
    assert first["init"] == second["init"] == "init"  # the run's initial weights, from the ckpt
    assert first["l2_dist"] > 0 and first["num_layers"] == 2
    assert first.keys() == second.keys()
    for key, value in first.items():
        if isinstance(value, float):
            assert second[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
        else:
            assert second[key] == value, key
