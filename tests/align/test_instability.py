"""experiment=instability: the stages' command lines compose; the driver runs end to end."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lsuite.config.paths import config_dir

ROOT = Path(__file__).resolve().parents[2]


def composed(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=["experiment=instability", *overrides])


def test_parent_and_child_command_lines_compose():
    parent = composed(
        [
            "callbacks=[default,trajectory]",
            "callbacks.trajectory.every_n_train_steps=10",
            "callbacks.trajectory.filename='step{step}'",
        ]
    )
    assert parent.model._target_ == "lsuite.model.cnn.CNN"
    assert parent.data._target_ == "lsuite.data.mnist1d.MNIST1DDataModule"
    assert parent.scheduler is None and parent.test is True
    assert parent.callbacks.trajectory.filename == "step{step}"
    assert parent.callbacks.trajectory.every_n_train_steps == 10
    assert parent.callbacks.model_checkpoint is None and parent.callbacks.last_checkpoint
    assert "progress_bar" in parent.callbacks
    child = composed(["init_from=runs/parent/checkpoints/step10.ckpt", "data_seed=2"])
    assert child.init_from == "runs/parent/checkpoints/step10.ckpt" and child.data_seed == 2
    assert "trajectory" not in child.callbacks
    assert child.optim.lr == parent.optim.lr and child.seed == parent.seed


@pytest.mark.slow
def test_driver_smoke_writes_the_table_csv_and_png(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "instability.py"),
            "--smoke",
            "--epochs=1",
            "--ks=2",
            "--every=2",
            f"--out={tmp_path / 'runs'}",
            f"--figures={tmp_path / 'figures'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "| k | train error barrier |" in out and "| 2 |" in out
    assert "first k with val error barrier < 2%:" in out
    rows = list(csv.DictReader((tmp_path / "figures" / "instability_cnn_smoke.csv").open()))
    assert [r["k"] for r in rows] == ["2"]
    assert 0 <= float(rows[0]["val_error_barrier"]) <= 1
    assert (tmp_path / "figures" / "instability_cnn_smoke.png").stat().st_size > 0
    # the children started from the parent's step-2 checkpoint, with their own data order
    children = sorted((tmp_path / "runs" / "children").glob("*/config.yaml"))
    assert len(children) == 2
    text = [c.read_text() for c in children]
    assert all("step2.ckpt" in t for t in text)
    assert {"data_seed: 1" in t for t in text} == {True, False}


def test_resnet20_runs_on_mnist1d_signals():
    import torch
    from hydra.utils import instantiate

    cfg = composed(["model=resnet"])
    assert cfg.model.depth == 20 and cfg.data._target_.endswith("MNIST1DDataModule")
    net = instantiate(cfg.model)(input_shape=(1, 40), num_classes=10)
    assert isinstance(net.stem.conv, torch.nn.Conv1d)
    assert net(torch.randn(2, 1, 40)).shape == (2, 10)
