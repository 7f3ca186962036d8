"""Issue 10 item 6 through the real ``lsuite-train``: a failing probe under warn and raise.

``failing_probe.FailingProbe`` (tests/helpers) raises after 2 of its 5 reductions over data,
on every rank or on rank 1 only. Under ``warn`` the run finishes with failure records; under
``raise`` it fails naming the probe; with one failing rank of two, nothing hangs.
"""

import sys

import pytest
from timed_run import command_env, run_timed
from tiny_run import TINY_RUN

from lsuite.results import jsonl

QUICK = [
    *TINY_RUN,
    "logger=[csv]",
]


def run(tmp_path, on_error, *extra, fail_rank="null"):
    run_dir = tmp_path / "run"
    probe = [
        "+probes.failing._target_=lsuite.callbacks.ProbeCallback",
        "+probes.failing.probe._target_=failing_probe.FailingProbe",
        "+probes.failing.probe.name=failing",
        f"+probes.failing.probe.fail_rank={fail_rank}",
        "+probes.failing.every_n_epochs=1",
        "+probes.failing.num_batches=2",
        f"+probes.failing.on_error={on_error}",
        "+probes.failing.output_dir=${run_dir}",
    ]
    env = command_env(helpers=True)
    result = run_timed(
        [sys.executable, "-m", "lsuite.train", *QUICK, *probe, *extra, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=env,
        timeout=300,  # a hang fails the test
    )
    return run_dir, result


def check_failure_records(run_dir, steps):
    raws = jsonl.read_records(run_dir / "probes" / "failing.jsonl")
    assert [r["meta"]["step"] for r in raws] == steps
    assert all(r["result"] is None and r["error"]["type"] for r in raws)
    assert "probe/failing/failed" in (run_dir / "csv" / "metrics.csv").read_text()


@pytest.mark.slow
def test_warn_records_the_failure_and_training_finishes(tmp_path):
    run_dir, result = run(tmp_path, "warn")
    assert result.returncode == 0, result.stderr[-3000:]
    check_failure_records(run_dir, [3, 6])
    assert "test/acc" in (run_dir / "csv" / "metrics.csv").read_text()
    warnings = (run_dir / "train.log").read_text().count("probe failing failed at step")
    assert warnings == 2  # one line per failed measurement


@pytest.mark.slow
def test_raise_fails_the_run_naming_the_probe(tmp_path):
    _, result = run(tmp_path, "raise")
    assert result.returncode != 0
    assert "probe failing failed: RuntimeError: planted probe failure" in result.stderr


@pytest.mark.ddp
@pytest.mark.slow
def test_one_failing_rank_of_two_does_not_hang(tmp_path):
    run_dir, result = run(tmp_path, "warn", "trainer=ddp_cpu", fail_rank="1")
    assert result.returncode == 0, result.stderr[-3000:]
    check_failure_records(run_dir, [3, 6])
