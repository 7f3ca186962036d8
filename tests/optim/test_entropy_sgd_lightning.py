"""Entropy-SGD under Lightning's automatic optimisation equals a hand-written Langevin loop.

The lsuite ``Classifier`` trains for a few batches in a fixed order; the same steps are replayed
by hand: L gradients of the batch at the Langevin iterates (BatchNorm statistics kept from the
first), the noise drawn from a generator seeded like the optimizer's, then Nesterov SGD along
``x - mu``. Then: a resumed run continues like an uninterrupted one, and ``lsuite-train
optim=entropy_sgd`` runs alone and under ``trainer=ddp_cpu`` (the two ranks end equal) and
refuses gradient accumulation before training.
"""

import copy
import math
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from timed_run import command_env, run_timed
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lsuite.model.classifier import Classifier
from lsuite.model.mlp import MLP
from lsuite.optim.entropy_sgd import STATE_KEY, EntropySGD

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
LR, MOMENTUM = 0.5, 0.9
SETTINGS = {
    "langevin_steps": 3,
    "gamma": 0.5,
    "scoping": 0.2,
    "noise": 0.01,
    "langevin_lr": 0.2,
    "alpha": 0.75,
    "seed": 3,
}


def make_data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


def make_net(bn=False, seed=0):
    torch.manual_seed(seed)
    if bn:
        return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    return MLP(input_shape=(6,), num_classes=3, width=8, depth=1)


def factory():
    base = partial(torch.optim.SGD, lr=LR, momentum=MOMENTUM, nesterov=True)
    return partial(EntropySGD, base_optimizer=base, **SETTINGS)


def trainer(**kwargs):
    options = {
        "accelerator": "cpu",
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        **kwargs,
    }
    return Trainer(**options)


def hand_loop(net, batches):
    """Replay Entropy-SGD step by step on ``batches`` (one outer step each)."""
    net = copy.deepcopy(net)
    params = list(net.parameters())
    base = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, nesterov=True)
    generator = torch.Generator().manual_seed(SETTINGS["seed"])
    eta, eps, alpha = SETTINGS["langevin_lr"], SETTINGS["noise"], SETTINGS["alpha"]
    for t, (x, y) in enumerate(batches):
        gamma = SETTINGS["gamma"] * (1 + SETTINGS["scoping"]) ** t
        anchor = [p.detach().clone() for p in params]
        mean = [p.detach().clone() for p in params]
        statistics = None
        for step in range(SETTINGS["langevin_steps"]):
            net.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            if step == 0:
                statistics = copy.deepcopy(list(net.buffers()))
            with torch.no_grad():
                for p, a, m in zip(params, anchor, mean, strict=True):
                    xi = torch.randn(p.shape, generator=generator)
                    p.copy_(p - eta * (p.grad - gamma * (a - p)) + math.sqrt(eta) * eps * xi)
                    m.copy_((1 - alpha) * m + alpha * p)
        with torch.no_grad():
            for b, s in zip(net.buffers(), statistics, strict=True):
                b.copy_(s)
            for p, a, m in zip(params, anchor, mean, strict=True):
                p.copy_(a)
                p.grad = a - m
        base.step()
    return net


def assert_same_state(a, b, atol=1e-6):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=atol, msg=name)


@pytest.mark.parametrize("bn", [False, True], ids=["mlp", "batchnorm"])
def test_lightning_entropy_sgd_equals_hand_loop(bn):
    x, y = make_data()
    start = make_net(bn=bn)
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 48, 16)]
    expected = hand_loop(start, batches)
    module = Classifier(copy.deepcopy(start), optimizer=factory(), num_classes=3)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    trainer().fit(module, train_dataloaders=loader)
    assert_same_state(module.net, expected)
    assert module.trainer.optimizers[0].outer_steps == 3
    assert not torch.equal(next(module.net.parameters()), next(start.parameters()))
    if bn:  # one running-statistics update per outer step, from its first Langevin step
        assert int(module.net[1].num_batches_tracked) == len(batches)


def test_resumed_run_continues_like_an_uninterrupted_one(tmp_path):
    """Checkpoint after epoch 1 of 2: the noise generator and t come back with the optimizer."""
    x, y = make_data(n=32, seed=2)
    start = make_net(seed=2)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    whole = Classifier(copy.deepcopy(start), optimizer=factory(), num_classes=3)
    trainer(max_epochs=2).fit(whole, train_dataloaders=loader)

    first = Classifier(copy.deepcopy(start), optimizer=factory(), num_classes=3)
    stopped = trainer(max_epochs=1)
    stopped.fit(first, train_dataloaders=loader)
    path = tmp_path / "half.ckpt"
    stopped.save_checkpoint(path)
    saved = torch.load(path, weights_only=False)["optimizer_states"][0][STATE_KEY]
    assert saved["outer_steps"] == 2
    resumed = Classifier(copy.deepcopy(start), optimizer=factory(), num_classes=3)
    trainer(max_epochs=2).fit(resumed, train_dataloaders=loader, ckpt_path=path)
    assert resumed.trainer.optimizers[0].outer_steps == 4
    assert_same_state(resumed.net, whole.net, atol=0)


def run_train(args, tmp_path, timeout, env_extra=None):
    env = command_env(**(env_extra or {}))
    run_dir = tmp_path / "run"
    result = run_timed(
        [sys.executable, "-m", "lsuite.train", *args, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=env,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir, result


@pytest.mark.slow
def test_cli_entropy_sgd_trains_with_the_default_config(tmp_path):
    """The default config (progress bar, wandb offline, test=true), 4 steps of L = 20."""
    args = ["optim=entropy_sgd", "trainer.max_epochs=1", "trainer.limit_train_batches=4"]
    run_dir, result = run_train(args, tmp_path, timeout=300)
    assert "test/acc" in result.stdout
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    own = checkpoint["optimizer_states"][0][STATE_KEY]
    assert own["outer_steps"] == 4


@pytest.mark.ddp
def test_cli_entropy_sgd_under_ddp_keeps_the_ranks_equal(tmp_path):
    weights = tmp_path / "weights"
    args = [
        "optim=entropy_sgd",
        "optim.langevin_steps=4",
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false",
        "logger=[csv]",
        "data.batch_size=64",
        "+callbacks.rank_weights._target_=rank_weights.RankWeightsDump",
        f"+callbacks.rank_weights.directory={weights}",
    ]
    run_train(args, tmp_path, timeout=300, env_extra={"PYTHONPATH": str(HELPERS)})
    rank0 = torch.load(weights / "rank0.pt")
    rank1 = torch.load(weights / "rank1.pt")
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key


def test_cli_refuses_gradient_accumulation_before_training(tmp_path):
    env = command_env()
    args = ["optim=entropy_sgd", "trainer.accumulate_grad_batches=2"]
    result = run_timed(
        [sys.executable, "-m", "lsuite.train", *args], cwd=tmp_path, env=env, timeout=120
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0] == (
        "lsuite-train: error: trainer.accumulate_grad_batches: got 2; expected 1 with optim "
        "Entropy-SGD (every Langevin step of a step must see the same batch)"
    )
    assert not list(tmp_path.iterdir())  # nothing was built or written
