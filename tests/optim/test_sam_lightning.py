"""SAM under Lightning's automatic optimisation equals a hand-written two-pass loop.

Every case trains the lsuite ``Classifier`` for a few batches in a fixed order and replays the
same steps by hand: gradient at w, ascent step, gradient at w + e (BatchNorm statistics kept from
the first pass), restore w, base SGD step with the second gradient; clipping is applied to each
gradient as Lightning's precision plugin does.
"""

import copy
import csv
from datetime import timedelta
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lsuite.model.classifier import Classifier
from lsuite.model.mlp import MLP
from lsuite.optim.sam import ASAM_ETA, SAM

LR, MOMENTUM, RHO = 0.1, 0.9, 0.2


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


def sam_factory(rho=RHO, adaptive=False, perturbation="local"):
    base = partial(torch.optim.SGD, lr=LR, momentum=MOMENTUM)
    return partial(SAM, base_optimizer=base, rho=rho, adaptive=adaptive, perturbation=perturbation)


def fit(net, loader, optimizer, **trainer_kwargs):
    module = Classifier(net, optimizer=optimizer, num_classes=3)
    options = {
        "accelerator": "cpu",
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        **trainer_kwargs,
    }
    Trainer(**options).fit(module, train_dataloaders=loader)
    return module.net


def gradients(net, x, y, clip=None, bf16=False):
    """Return the loss, the accuracy count and the (clipped) gradients of one forward/backward."""
    net.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = net(x)
        loss = F.cross_entropy(logits, y)
    loss.backward()
    if clip is not None:
        value, algorithm = clip
        if algorithm == "norm":
            torch.nn.utils.clip_grad_norm_(net.parameters(), value)
        else:
            torch.nn.utils.clip_grad_value_(net.parameters(), value)
    correct = int((logits.argmax(1) == y).sum())
    return loss.detach(), correct, [p.grad.detach().clone() for p in net.parameters()]


def ascent(params, grads, rho, adaptive):
    """SAM's e = rho g / ||g||, or ASAM's e = rho T^2 g / ||T g|| with T = |w| + eta."""
    scales = [p.detach().abs() + ASAM_ETA if adaptive else torch.ones_like(p) for p in params]
    scaled = [t * g for t, g in zip(scales, grads, strict=True)]
    norm = torch.cat([v.flatten() for v in scaled]).norm()
    return [rho * t * v / (norm + 1e-12) for t, v in zip(scales, scaled, strict=True)]


def hand_loop(net, steps, rho=RHO, adaptive=False, clip=None, bf16=False):
    """Replay SAM; ``steps`` lists, per step, the shards ``[(x, y), ...]`` of the ranks.

    Each shard ascends along its own gradient (one shard: plain SAM); the descent gradient is
    the mean over the shards of the gradient at each shard's perturbed weights, as DDP's
    all-reduce computes it. Returns the net and the first-pass (loss, correct) per step.
    """
    net = copy.deepcopy(net)
    params = list(net.parameters())
    base = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM)
    first_pass = []
    for shards in steps:
        start = [p.detach().clone() for p in params]
        descent = [torch.zeros_like(p) for p in params]
        for x, y in shards:
            loss, correct, grads = gradients(net, x, y, clip, bf16)
            first_pass.append((loss, correct))
            statistics = copy.deepcopy(list(net.buffers()))
            with torch.no_grad():
                for p, e in zip(params, ascent(params, grads, rho, adaptive), strict=True):
                    p.add_(e)
            _, _, grads = gradients(net, x, y, clip, bf16)
            with torch.no_grad():
                for d, g in zip(descent, grads, strict=True):
                    d.add_(g / len(shards))
                for p, w in zip(params, start, strict=True):
                    p.copy_(w)
                for b, s in zip(net.buffers(), statistics, strict=True):
                    b.copy_(s)
        for p, d in zip(params, descent, strict=True):
            p.grad = d
        base.step()
    return net, first_pass


def assert_same_state(a, b, atol=1e-6):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=atol, msg=name)


CASES = [
    {"id": "sam"},
    {"id": "asam", "adaptive": True, "rho": 1.0},
    {"id": "clip_norm", "trainer": {"gradient_clip_val": 0.05}, "clip": (0.05, "norm")},
    {
        "id": "clip_value",
        "trainer": {"gradient_clip_val": 0.01, "gradient_clip_algorithm": "value"},
        "clip": (0.01, "value"),
    },
    {"id": "bf16", "trainer": {"precision": "bf16-mixed"}, "bf16": True},
    {"id": "batchnorm", "bn": True},
]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_lightning_sam_equals_hand_loop(case):
    x, y = make_data()
    start = make_net(bn=case.get("bn", False))
    rho, adaptive = case.get("rho", RHO), case.get("adaptive", False)
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 48, 16)]
    expected, _ = hand_loop(
        start,
        [[b] for b in batches],
        rho=rho,
        adaptive=adaptive,
        clip=case.get("clip"),
        bf16=case.get("bf16", False),
    )
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    trained = fit(
        copy.deepcopy(start), loader, sam_factory(rho, adaptive), **case.get("trainer", {})
    )
    assert_same_state(trained, expected)
    assert not torch.equal(next(trained.parameters()), next(start.parameters()))
    if "clip" in case:  # the clipping mattered: without it the weights differ
        unclipped, _ = hand_loop(start, [[b] for b in batches], rho=rho, adaptive=adaptive)
        assert not torch.allclose(next(unclipped.parameters()), next(expected.parameters()))
    if case.get("bn"):
        assert int(trained[1].num_batches_tracked) == len(batches)


def test_batchnorm_statistics_come_from_the_first_pass_only():
    x, y = make_data()
    net = make_net(bn=True)
    reference = copy.deepcopy(net)
    reference(x[:16])  # one forward at the starting weights, as the first pass does
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    trained = fit(net, loader, sam_factory(), max_steps=1)
    for name, buffer in trained[1].named_buffers():
        assert torch.equal(buffer, getattr(reference[1], name)), name


def test_logged_metrics_are_those_of_the_first_pass(tmp_path):
    x, y = make_data()
    net = make_net()
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 48, 16)]
    _, first_pass = hand_loop(net, [[b] for b in batches])
    logger = CSVLogger(tmp_path, name="csv", version="")
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    fit(net, loader, sam_factory(), logger=logger, log_every_n_steps=1)
    with open(tmp_path / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    step_losses = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    expected = [float(loss) for loss, _ in first_pass]
    assert step_losses == pytest.approx(expected, abs=1e-6)
    (epoch,) = [r for r in rows if r.get("train/loss_epoch")]
    assert float(epoch["train/loss_epoch"]) == pytest.approx(sum(expected) / 3, abs=1e-6)
    correct = sum(c for _, c in first_pass)
    assert float(epoch["train/acc"]) == pytest.approx(correct / 48, abs=1e-6)


@pytest.mark.ddp
@pytest.mark.parametrize("perturbation", ["local", "synchronized"])
def test_ddp_sam_equals_hand_loop_over_both_shards(perturbation):
    """2 ranks x 16 samples per step: the descent gradient is averaged, the ascent per setting."""
    x, y = make_data(n=64, seed=1)
    start = make_net(seed=1)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    strategy = DDPStrategy(start_method="spawn", timeout=timedelta(seconds=120))
    optimizer = sam_factory(perturbation=perturbation)
    trained = fit(copy.deepcopy(start), loader, optimizer, strategy=strategy, devices=2)

    # Lightning gives each rank a DistributedSampler that shuffles with seed 0 even for a loader
    # without shuffling: rank r holds positions r, r + 2, ... of that permutation (epoch 0).
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    shards = [(x[order[r::2]], y[order[r::2]]) for r in range(2)]
    steps = [[(sx[k : k + 16], sy[k : k + 16]) for sx, sy in shards] for k in (0, 16)]
    local, _ = hand_loop(start, steps)
    # Synchronised: every rank ascends along the mean gradient, i.e. that of both shards.
    full = [[(torch.cat([a for a, _ in step]), torch.cat([b for _, b in step]))] for step in steps]
    synchronized, _ = hand_loop(start, full)
    expected, other = (local, synchronized) if perturbation == "local" else (synchronized, local)
    assert_same_state(trained, expected)
    differences = [
        (a - b).abs().max() for a, b in zip(trained.parameters(), other.parameters(), strict=True)
    ]
    assert max(differences) > 1e-4
