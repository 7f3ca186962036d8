"""Issue 10 item 7: settings that could only fail after training exit 2 before the first step.

Through the real ``lsuite-train``: one line naming the probe and the key, and no checkpoint.
"""

import re
import sys

import pytest
from timed_run import command_env, run_timed

QUICK = ["trainer.max_epochs=2", "logger=[csv]", "model.width=16", "model.depth=1"]

CASES = {
    "loss_fn": (
        ["probes=hessian_trace", "probes.hessian_trace.loss_fn=torch.nn.functional.mse_loss"],
        r"probe hessian_trace: loss_fn=torch\.nn\.functional\.mse_loss does not fit the model: "
        r"outputs \(\d+, 10\) float32, targets \(\d+,\) int64",
    ),
    "batch_adapter": (
        ["probes=hessian_trace", "probes.hessian_trace.batch_adapter=os.path.basename"],
        r"probe hessian_trace: batch_adapter=\S*basename fails on a batch list\[\(\d+, 1, 8, 8\)",
    ),
    "never_runs": (
        [
            "probes=hessian_trace",
            "probes.hessian_trace.every_n_epochs=50",
            "probes.hessian_trace.on_fit_end=false",
        ],
        r"hessian_trace\.every_n_epochs: got 50; .*max_epochs=2",
    ),
    "start_unreachable": (
        ["probes=interpolation", "probes.interpolation.probe.start=epoch:100"],
        r"epoch 100 is never reached",
    ),
    "start_unknown": (
        ["probes=interpolation", "probes.interpolation.probe.start=foo"],
        r"start: got 'foo'",
    ),
    "start_corrupt_file": (
        ["probes=interpolation", "probes.interpolation.probe.start={corrupt}"],
        r"start: cannot read .*corrupt\.pt",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_late_failing_setting_exits_2_before_training(tmp_path, case):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    overrides, pattern = CASES[case]
    run_dir = tmp_path / "run"
    env = command_env()
    result = run_timed(
        [
            sys.executable,
            "-m",
            "lsuite.train",
            *QUICK,
            *[o.format(corrupt=corrupt) for o in overrides],
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=env,
        timeout=180,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [
        line for line in result.stderr.splitlines() if line.startswith("lsuite-train: error:")
    ]
    assert len(errors) == 1, result.stderr[-3000:]
    assert re.search(pattern, errors[0]), errors[0]
    assert not list(run_dir.rglob("*.ckpt"))
