"""The training hinges end to end through lsuite-train: resume after SIGKILL, init_from children."""

import csv
import json
import signal
import sys

import pytest
import torch
import yaml
from timed_run import command_env, run_timed

# Default callbacks (checkpoints, progress bar, ...), test=true; 6 steps per epoch on digits.
TINY = [
    "trainer.max_epochs=2",
    "deterministic=true",
    "logger=[csv]",
    "data.batch_size=256",
    "model.width=16",
    "trainer.enable_model_summary=false",
]
PROBE = [
    "probes=[hessian_trace]",
    "probes.hessian_trace.probe.num_matvecs=4",
    "probes.hessian_trace.probe.block_size=4",
    "probes.hessian_trace.num_batches=1",
    "probes.hessian_trace.every_n_train_steps=4",
]


def run_cli(args, cwd, timeout=300):
    env = command_env(helpers=True)
    env.pop("LSUITE_RESUME", None)
    return run_timed(
        [sys.executable, "-m", "lsuite.train", *args],
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def weights(path):
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state), state.get("global_step")


def csv_rows(run_dir):
    with (run_dir / "csv" / "metrics.csv").open(newline="") as file:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(file)]


def records(run_dir):
    lines = (run_dir / "probes" / "hessian_trace.jsonl").read_text().splitlines()
    out = []
    for raw in map(json.loads, lines):
        meta = raw.get("meta", raw)
        out.append((meta["step"], meta["when"], raw.get("scalars", {}).get("trace")))
    return out


KILL = ["+callbacks.kill._target_=kill_at_step.KillAtStep"]
# Every third step's checkpoint kept as well (callbacks do not change training).
TRAJECTORY = ["callbacks=[default,trajectory]", "callbacks.trajectory.every_n_train_steps=3"]


@pytest.fixture(scope="module", name="whole")
def _whole(tmp_path_factory):
    """A run never stopped: 2 epochs of 6 steps, probe records at steps 4, 6, 8 and 12."""
    root = tmp_path_factory.mktemp("whole")
    done = run_cli([*TINY, *PROBE, *KILL, f"hydra.run.dir={root / 'run'}"], root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "run"


@pytest.mark.slow
def test_sigkill_then_resume_auto_equals_an_uninterrupted_run(whole, tmp_path):
    cut = tmp_path / "cut"
    # Killed in the second epoch: the first epoch's checkpoint and records are on disk.
    args = [*TINY, *PROBE, *KILL, f"hydra.run.dir={cut}"]
    killed = run_cli([*args, "+callbacks.kill.step=9"], tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert weights(cut / "checkpoints" / "last.ckpt")[1] == 6
    assert [r[0] for r in records(cut)] == [4, 6, 8]
    resumed = run_cli([*args, "resume=auto"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resume=auto: continuing from" in resumed.stdout + resumed.stderr
    assert "test/acc" in resumed.stdout + resumed.stderr  # test=true ran after the resumed fit
    want, step = weights(whole / "checkpoints" / "last.ckpt")
    got, resumed_step = weights(cut / "checkpoints" / "last.ckpt")
    assert step == resumed_step == 12
    for key in want:
        assert torch.equal(want[key], got[key]), key
    # Every record once, in order, with the uninterrupted run's values.
    assert records(cut) == records(whole)
    assert [r[0] for r in records(whole)] == [4, 6, 8, 12]
    # The CSV log too: the first part's rows kept (Lightning's CSVLogger deleted them), the
    # killed steps after its checkpoint logged once, by the resumed part. Probe scalars the
    # killed part had not flushed (step 8) are in the records above, not logged again.
    assert [r for r in csv_rows(cut)] == [r for r in csv_rows(whole) if r["step"] != "8"]
    assert {r["epoch"] for r in csv_rows(whole) if r.get("train/loss_epoch")} == {"0", "1"}


@pytest.mark.slow
def test_children_of_one_parent_differ_in_data_order_only(whole, tmp_path):
    start = whole / "checkpoints" / "last.ckpt"  # the parent, at step 12
    dumps = {}
    wandb = ["logger=[csv,wandb]"]
    for name, seeds in (
        ("a", ["data_seed=1", *TRAJECTORY, *wandb]),
        ("b", ["data_seed=2", "seed=5"]),
    ):
        dumps[name] = tmp_path / f"dump_{name}"
        child = [
            *TINY,
            "trainer.max_epochs=1",
            f"init_from={start}",
            *seeds,
            "+callbacks.dump._target_=start_dump.StartDump",
            f"+callbacks.dump.directory={dumps[name]}",
            f"hydra.run.dir={tmp_path / name}",
        ]
        result = run_cli(child, tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        config = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
        assert config["init_from"] == str(start)
    parent_weights, _ = weights(start)
    a, b = (torch.load(dumps[n] / "start.pt", weights_only=True) for n in "ab")
    for key in parent_weights:  # both start from the parent's weights and buffers
        assert torch.equal(a[key], parent_weights[key]) and torch.equal(b[key], parent_weights[key])
    for split in ("train", "val"):  # the same samples (split_seed), seed=5 notwithstanding
        xa, ya = torch.load(dumps["a"] / f"{split}.pt", weights_only=True)
        xb, yb = torch.load(dumps["b"] / f"{split}.pt", weights_only=True)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    first_a, first_b = (torch.load(dumps[n] / "first_batch.pt", weights_only=True) for n in "ab")
    assert not torch.equal(first_a[0], first_b[0])  # in another order
    # Each child trains from step 0 with a fresh optimizer: one epoch is 6 steps.
    assert weights(tmp_path / "a" / "checkpoints" / "last.ckpt")[1] == 6
    # resume=PATH without hydra.run.dir continues in the run directory it names.
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    more = run_cli([*TINY, *TRAJECTORY, *wandb, f"resume={last}"], tmp_path)
    assert more.returncode == 0, more.stderr[-3000:]
    assert weights(tmp_path / "a" / "checkpoints" / "last.ckpt")[1] == 12
    # The resumed part continues the child's wandb run: two offline directories, one run id.
    parts = sorted((tmp_path / "a" / "wandb").glob("offline-run-*"))
    assert len(parts) == 2 and len({p.name.rsplit("-", 1)[1] for p in parts}) == 1, parts
    assert (
        f"resume: wandb continues run {parts[0].name.rsplit('-', 1)[1]}"
        in more.stdout + more.stderr
    )
    config = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert config["trainer"]["max_epochs"] == 2 and config["resume"].endswith("last.ckpt")
    assert not (tmp_path / "outputs").exists()
    kept = sorted(p.name for p in (tmp_path / "a" / "checkpoints").glob("step*.ckpt"))
    assert kept == [f"step{s:06d}-epoch{s // 7:03d}.ckpt" for s in (3, 6, 9, 12)]


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["init_from=/nonexistent/w.pt"], "init_from: got '/nonexistent/w.pt'; expected a "),
        (["resume=/nonexistent/run"], "resume: got '/nonexistent/run'; expected auto, null"),
    ],
    ids=["init_from", "resume"],
)
def test_bad_hinge_values_stop_with_one_line(args, pattern, tmp_path):
    result = run_cli([*args, "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "lsuite-train: error:" in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert pattern in errors[0], errors[0]
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.ddp
def test_resume_auto_under_ddp_continues_once(tmp_path):
    """Two processes: the resumed run continues the CSV log and says so once, not per rank."""
    run_dir = tmp_path / "run"
    args = [*TINY, "trainer=ddp_cpu", "test=false", f"hydra.run.dir={run_dir}"]
    first = run_cli([*args, "trainer.max_epochs=1"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_cli([*args, "trainer.max_epochs=2", "resume=auto"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (resumed.stdout + resumed.stderr).count("resume=auto: continuing from") == 1
    assert weights(run_dir / "checkpoints" / "last.ckpt")[1] == 6  # 3 steps per rank and epoch
    assert {r["epoch"] for r in csv_rows(run_dir) if r.get("train/loss_epoch")} == {"0", "1"}
