"""Entropy-SGD: steps against a hand loop on a quadratic, state round trip, BatchNorm, settings."""

import copy
import math
from functools import partial

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lsuite.config.paths import config_dir
from lsuite.config.validate import validate
from lsuite.errors import ConfigError
from lsuite.optim.entropy_sgd import STATE_KEY, EntropySGD
from lsuite.optim.sam import SAM

LR, MOMENTUM = 0.5, 0.9
SETTINGS = {
    "langevin_steps": 5,
    "gamma": 0.3,
    "scoping": 0.1,
    "noise": 0.05,
    "langevin_lr": 0.1,
    "alpha": 0.75,
    "seed": 7,
}


def quadratic(seed=0):
    """``0.5 (t - t*)^T A (t - t*)`` over ``t = cat(W.flatten(), b)``: W is (2, 2), b is (3,)."""
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(7, 7, generator=g, dtype=torch.float64)
    a = m @ m.T / 7 + 0.5 * torch.eye(7, dtype=torch.float64)
    target = torch.randn(7, generator=g, dtype=torch.float64)
    start = torch.randn(7, generator=g, dtype=torch.float64)
    return a, target, start


def split(theta):
    return [theta[:4].reshape(2, 2).clone().requires_grad_(), theta[4:].clone().requires_grad_()]


def flat(params):
    return torch.cat([p.detach().flatten() for p in params])


def closure_for(params, a, target, on_call=None):
    """Lightning-style closure: zero the gradients, compute the loss, backward."""

    def closure():
        for p in params:
            p.grad = None
        d = torch.cat([p.flatten() for p in params]) - target
        loss = 0.5 * d @ a @ d
        loss.backward()
        if on_call is not None:
            on_call()
        return loss

    return closure


def hand_steps(a, target, w, steps, settings=SETTINGS, lr=LR, momentum=MOMENTUM, nesterov=False):
    """Algorithm 1 written out on the flat vector, with the optimizer's noise draws.

    The noise of each Langevin step is one ``randn`` per parameter (W of shape (2, 2), then b
    of shape (3,)) from a generator seeded with ``seed``; the outer step is SGD with momentum
    along ``x - mu``, at ``gamma_t = gamma (1 + scoping)^t``.
    """
    generator = torch.Generator().manual_seed(settings["seed"])
    eta, eps, alpha = settings["langevin_lr"], settings["noise"], settings["alpha"]
    x, buffer = w.clone(), None
    for t in range(steps):
        gamma = settings["gamma"] * (1 + settings["scoping"]) ** t
        xp, mu = x.clone(), x.clone()
        for _ in range(settings["langevin_steps"]):
            xi = torch.cat(
                [
                    torch.randn(2, 2, generator=generator, dtype=torch.float64).flatten(),
                    torch.randn(3, generator=generator, dtype=torch.float64),
                ]
            )
            grad = a @ (xp - target)
            xp = xp - eta * (grad - gamma * (x - xp)) + math.sqrt(eta) * eps * xi
            mu = (1 - alpha) * mu + alpha * xp
        d = x - mu
        buffer = d.clone() if buffer is None else momentum * buffer + d
        x = x - lr * (d + momentum * buffer if nesterov else buffer)
    return x


def make(params, **overrides):
    base = partial(torch.optim.SGD, lr=LR, momentum=MOMENTUM)
    return EntropySGD(params, base, **{**SETTINGS, **overrides})


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
def test_steps_equal_hand_loop_on_a_quadratic(nesterov):
    a, target, w = quadratic()
    params = split(w)
    base = partial(torch.optim.SGD, lr=LR, momentum=MOMENTUM, nesterov=nesterov)
    optimizer = EntropySGD(params, base, **SETTINGS)
    calls = []
    closure = closure_for(params, a, target, lambda: calls.append(optimizer.in_second_pass))
    losses = [optimizer.step(closure) for _ in range(3)]
    expected = hand_steps(a, target, w, 3, nesterov=nesterov)
    torch.testing.assert_close(flat(params), expected, rtol=0, atol=1e-12)
    assert losses[0].item() == pytest.approx(0.5 * float((w - target) @ a @ (w - target)))
    assert calls == 3 * [False, True, True, True, True]
    assert not optimizer.in_second_pass
    assert optimizer.outer_steps == 3
    assert optimizer.scope() == pytest.approx(0.3 * 1.1**3)
    # The noise and the coupling matter: without noise, or without scoping, the weights differ.
    for overrides in ({"noise": 0.0}, {"scoping": 0.0}):
        twin = split(w)
        other = EntropySGD(twin, base, **{**SETTINGS, **overrides})
        for _ in range(3):
            other.step(closure_for(twin, a, target))
        assert (flat(twin) - expected).abs().max() > 1e-6


def test_one_langevin_step_without_noise_is_a_gradient_step_on_the_average():
    """L = 1, noise 0, alpha 1: mu = x - eta' g, so plain SGD (lr 1) lands on x - eta' g."""
    a, target, w = quadratic(1)
    params = split(w)
    settings = {"langevin_steps": 1, "noise": 0.0, "alpha": 1.0, "langevin_lr": 0.2}
    optimizer = EntropySGD(params, partial(torch.optim.SGD, lr=1.0), **settings)
    optimizer.step(closure_for(params, a, target))
    torch.testing.assert_close(flat(params), w - 0.2 * (a @ (w - target)), rtol=0, atol=1e-14)


def test_state_dict_round_trip_continues_identically():
    a, target, w = quadratic(2)
    params = split(w)
    optimizer = make(params)
    closure = closure_for(params, a, target)
    for _ in range(2):
        optimizer.step(closure)
    saved = copy.deepcopy(optimizer.state_dict())
    assert saved[STATE_KEY]["outer_steps"] == 2
    assert all("momentum_buffer" in s for s in saved["state"].values())

    twin_params = [p.detach().clone().requires_grad_() for p in params]
    twin = make(twin_params, seed=123)  # another seed: the loaded generator state must win
    twin.load_state_dict(saved)
    assert twin.param_groups is twin.base_optimizer.param_groups
    assert twin.state is twin.base_optimizer.state
    twin_closure = closure_for(twin_params, a, target)
    for _ in range(2):
        optimizer.step(closure)
        twin.step(twin_closure)
    torch.testing.assert_close(flat(twin_params), flat(params), rtol=0, atol=0)
    torch.testing.assert_close(flat(params), hand_steps(a, target, w, 4), rtol=0, atol=1e-12)

    clone = copy.deepcopy(optimizer)
    assert clone.param_groups is clone.base_optimizer.param_groups
    assert torch.equal(clone.generator.get_state(), optimizer.generator.get_state())
    with pytest.raises(ValueError, match=STATE_KEY):
        twin.load_state_dict(torch.optim.SGD(twin_params, lr=LR).state_dict())


def test_scheduler_acts_on_the_base_learning_rate():
    a, target, w = quadratic(3)
    params = split(w)
    optimizer = make(params)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** (step + 1))
    assert optimizer.base_optimizer.param_groups[0]["lr"] == pytest.approx(LR / 2)
    optimizer.step(closure_for(params, a, target))
    scheduler.step()
    assert optimizer.base_optimizer.param_groups[0]["lr"] == pytest.approx(LR / 4)
    assert optimizer.langevin_lr == SETTINGS["langevin_lr"]


def test_batchnorm_statistics_come_from_the_first_langevin_step_only():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 2))
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    reference = copy.deepcopy(net)
    reference(x)  # one forward at the starting weights, as the first Langevin step does
    optimizer = EntropySGD(net.parameters(), partial(torch.optim.SGD, lr=0.1), langevin_steps=4)
    optimizer.connect(net)

    def closure():
        net.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    for name, buffer in net[1].named_buffers():
        assert torch.equal(buffer, getattr(reference[1], name)), name
    # Unconnected, the later Langevin steps move the statistics too.
    loose = copy.deepcopy(reference)
    loose[1].reset_running_stats()
    net.load_state_dict(loose.state_dict())
    optimizer = EntropySGD(net.parameters(), partial(torch.optim.SGD, lr=0.1), langevin_steps=4)
    optimizer.step(closure)
    assert int(net[1].num_batches_tracked) == 4


def test_no_gradients_means_no_step_and_no_closure_is_refused():
    p = torch.ones(3, requires_grad=True)
    optimizer = EntropySGD([p], partial(torch.optim.SGD, lr=LR, momentum=0.9))
    calls = []
    optimizer.step(lambda: calls.append(1) or torch.zeros(()))
    assert calls == [1]
    assert torch.equal(p.detach(), torch.ones(3))
    assert optimizer.outer_steps == 0
    with pytest.raises(RuntimeError, match="closure"):
        optimizer.step(None)
    with pytest.raises(TypeError, match="closure"):
        optimizer.step()  # type: ignore[call-arg]


def test_sam_refuses_to_wrap_entropy_sgd():
    """Entropy-SGD evaluates the loss itself, so it cannot be SAM's base optimizer."""
    with pytest.raises(ConfigError, match=r"^optim\.base_optimizer: got"):
        SAM(
            [torch.ones(2, requires_grad=True)], partial(EntropySGD, base_optimizer=torch.optim.SGD)
        )


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"langevin_steps": 0}, "optim.langevin_steps"),
        ({"langevin_steps": 2.5}, "optim.langevin_steps"),
        ({"gamma": -1e-4}, "optim.gamma"),
        ({"scoping": -1.0}, "optim.scoping"),
        ({"noise": -1.0}, "optim.noise"),
        ({"langevin_lr": 0.0}, "optim.langevin_lr"),
        ({"alpha": 0.0}, "optim.alpha"),
        ({"alpha": 1.5}, "optim.alpha"),
        ({"seed": "x"}, "optim.seed"),
        ({"base_optimizer": torch.optim.LBFGS}, "optim.base_optimizer"),
        (
            {"base_optimizer": partial(EntropySGD, base_optimizer=torch.optim.SGD)},
            "optim.base_optimizer",
        ),
    ],
    ids=[
        "L=0",
        "L=2.5",
        "gamma<0",
        "scoping<0",
        "noise<0",
        "lr=0",
        "alpha=0",
        "alpha>1",
        "seed",
        "lbfgs",
        "nested",
    ],
)
def test_bad_arguments_raise_config_error_naming_the_key(kwargs, key):
    arguments = {"base_optimizer": partial(torch.optim.SGD, lr=LR), **kwargs}
    with pytest.raises(ConfigError, match=rf"^{key}: got"):
        EntropySGD([torch.ones(2, requires_grad=True)], **arguments)


def compose_train(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides)


def test_config_wraps_the_sgd_config_with_nesterov_and_the_paper_defaults():
    sgd = compose_train(["optim=sgd"]).optim
    cfg = compose_train(["optim=entropy_sgd", "seed=5"])
    validate(cfg)
    assert dict(cfg.optim.base_optimizer) == {**dict(sgd), "nesterov": True}
    settings = {k: cfg.optim[k] for k in SETTINGS}
    assert settings == {
        "langevin_steps": 20,
        "gamma": 1e-4,
        "scoping": 1e-3,
        "noise": 1e-4,
        "langevin_lr": 0.1,
        "alpha": 0.75,
        "seed": 5,
    }


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["trainer.accumulate_grad_batches=2"], r"trainer\.accumulate_grad_batches"),
        (["trainer.precision=16-mixed"], r"trainer\.precision"),
        (["optim.langevin_steps=0"], r"optim\.langevin_steps"),
        (["optim.base_optimizer._target_=torch.optim.LBFGS"], r"optim\.base_optimizer"),
    ],
    ids=["accum", "fp16", "L=0", "lbfgs"],
)
def test_validate_refuses_bad_settings_before_training(overrides, key):
    cfg = compose_train(["optim=entropy_sgd", *overrides])
    with pytest.raises(ConfigError, match=rf"^{key}: got") as error:
        validate(cfg)
    if "accum" in key:
        assert "1 with optim Entropy-SGD" in str(error.value)
