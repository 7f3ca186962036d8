"""lsuite-train end to end in subprocesses: a short run, DDP on CPU, bad input."""

import re
import sys
from pathlib import Path

import pytest
import torch
from timed_run import command_env, run_timed

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
QUICK = [
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def run_cli(args, cwd, timeout=300, env_extra=None):
    env = command_env(**(env_extra or {}))
    return run_timed(
        [sys.executable, "-m", "lsuite.train", *args],
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def test_train_writes_config_checkpoint_and_metrics(tmp_path):
    run_dir = tmp_path / "run"
    # lr 1e-12: validation accuracy never improves after epoch 0, so the best checkpoint stays at
    # epoch 0 while last.ckpt must still follow the final weights (Lightning's save_last alone
    # would leave it at epoch 0 too).
    args = [*QUICK, "trainer.max_epochs=2", "optim.lr=1e-12", "logger=[csv,wandb]"]
    result = run_cli([*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    best = torch.load(checkpoints / "best-epoch000.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 1 and last["global_step"] == 2 * best["global_step"] > 0
    metrics = (run_dir / "csv" / "metrics.csv").read_text()
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "test/acc"):
        assert key in metrics
    assert list((run_dir / "wandb").glob("offline-run-*"))
    assert "lsuite: run finished in" in result.stdout
    assert str(run_dir / "checkpoints") in result.stdout


@pytest.mark.ddp
def test_ddp_cpu_two_ranks_one_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    weights = tmp_path / "weights"
    args = [
        *QUICK,
        "trainer=ddp_cpu",
        "logger=[csv]",
        "data.batch_size=64",
        f"hydra.run.dir={run_dir}",
        "+callbacks.rank_weights._target_=rank_weights.RankWeightsDump",
        f"+callbacks.rank_weights.directory={weights}",
    ]
    result = run_cli(args, cwd=tmp_path, env_extra={"PYTHONPATH": str(HELPERS)})
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(weights / "rank0.pt")
    rank1 = torch.load(weights / "rank1.pt")
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # One run directory with one set of files: no per-rank configs, logs or checkpoints.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "weights"]
    assert len(list(run_dir.rglob("metrics.csv"))) == 1
    assert len(list(run_dir.rglob(".hydra"))) == 1
    assert (
        sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.suffix == ".ckpt")[-1]
        == "last.ckpt"
    )
    assert len(list((run_dir / "checkpoints").glob("*.ckpt"))) == 2
    assert result.stdout.count("lsuite: run finished in") == 1
    # lsuite's own per-rank values are logged with sync_dist, so Lightning has no advice.
    assert "sync_dist=True" not in result.stdout + result.stderr


BAD_INPUTS = [
    (["model=mlpx"], r"model: got 'mlpx'; expected one of .*mlp"),
    (["optim.lrr=0.1"], r"optim\.lrr: unknown key 'lrr'; expected one of .*lr"),
    (["optim.lr=0"], r"optim\.lr: got 0; expected a number > 0"),
    (["optim.lr=-0.1"], r"optim\.lr: got -0\.1; expected a number > 0"),
    (["trainer.max_epochs=0"], r"trainer\.max_epochs: got 0; expected an int >= 1"),
    (
        ["data=mnist", "data.data_dir=/nonexistent/lsuite"],
        r"data\.data_dir: .*/nonexistent/lsuite.*train-images-idx3-ubyte",
    ),
    (["trainer=ddp"], r"trainer\.devices: got 2 with trainer\.accelerator=gpu; found 0 CUDA GPU"),
    (["-m", "optim.lr=0.1,-1"], r"optim\.lr: got -1; expected a number > 0"),
    # Hydra's "Ambiguous value" exited 1 with its own message.
    (["optim.lr=0.1,0.2"], r"optim\.lr: got 0\.1,0\.2, a sweep .* in a single run; add -m"),
    # A key of a probe that is not selected listed an empty "expected one of".
    (
        ["probes.hessian_trace.every_n_epochs=5"],
        r"probe 'hessian_trace' is not selected .*'probes=\[hessian_trace\]'",
    ),
    # One name for the eigenvalue probe: the old one is not an option.
    (["probes=hessian_eigs"], r"probes: got 'hessian_eigs'; expected one of .*hessian_eigenvalues"),
]


@pytest.mark.parametrize(("args", "pattern"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_stops_before_training_with_one_line(args, pattern, tmp_path):
    if "trainer=ddp" in args and torch.cuda.is_available():
        pytest.skip("this machine has GPUs, so trainer=ddp is valid here")
    result = run_cli(
        [*args, f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'multi'}"],
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "lsuite-train: error:" in line
    ]
    assert len(errors) == 1, result.stderr[-3000:]
    assert re.search(pattern, errors[0]), errors[0]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_last_checkpoint_sits_beside_the_trajectory_checkpoints(tmp_path):
    """Two unmonitored checkpoint callbacks, each every epoch: distinct state keys, one run."""
    run_dir = tmp_path / "run"
    args = [*QUICK, "trainer.max_epochs=2", "callbacks=[default,trajectory]", "logger=none"]
    result = run_cli([*args, f"hydra.run.dir={run_dir}", "test=false"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "last.ckpt" in names and len([n for n in names if n.startswith("step")]) == 2
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 1
