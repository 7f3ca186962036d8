"""SAM and ASAM: a step against the hand-computed one, state, BatchNorm freezing, bad settings."""

import copy
import sys
from functools import partial

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict
from timed_run import command_env, run_timed

from lsuite.config.paths import config_dir
from lsuite.config.validate import validate
from lsuite.errors import ConfigError
from lsuite.optim.sam import ASAM_ETA, SAM, bn_frozen

RHO, LR, EPS = 0.3, 0.1, 1e-12


def quadratic(seed=0):
    """``0.5 (t - t*)^T A (t - t*)`` over ``t = cat(W.flatten(), b)``: W is (2, 2), b is (3,)."""
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(7, 7, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(7, dtype=torch.float64)
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


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_one_step_equals_hand_computed_step(adaptive):
    a, target, w = quadratic()
    params = split(w)
    optimizer = SAM(params, partial(torch.optim.SGD, lr=LR), rho=RHO, adaptive=adaptive, eps=EPS)
    calls = []
    closure = closure_for(params, a, target, lambda: calls.append(optimizer.in_second_pass))
    loss = optimizer.step(closure)

    g = a @ (w - target)
    t = w.abs() + ASAM_ETA if adaptive else torch.ones_like(w)
    e = RHO * t * t * g / (torch.linalg.vector_norm(t * g) + EPS)
    expected = w - LR * (a @ (w + e - target))
    torch.testing.assert_close(flat(params), expected, rtol=0, atol=1e-12)
    assert loss.item() == pytest.approx(0.5 * float((w - target) @ a @ (w - target)), abs=1e-12)
    assert calls == [False, True]
    assert not optimizer.in_second_pass


def test_asam_step_differs_from_sam():
    """ASAM scales the ascent by |w| + eta elementwise, so its step is not SAM's."""
    a, target, w = quadratic(1)
    steps = {}
    for adaptive in (False, True):
        params = split(w)
        closure = closure_for(params, a, target)
        SAM(params, torch.optim.SGD, rho=RHO, adaptive=adaptive, lr=LR).step(closure)
        steps[adaptive] = flat(params)
    assert (steps[True] - steps[False]).abs().max() > 1e-6


def test_class_and_kwargs_base_equals_partial_base():
    a, target, w = quadratic(2)
    results = []
    for make in (
        lambda ps: SAM(ps, torch.optim.SGD, rho=RHO, lr=LR, momentum=0.9),
        lambda ps: SAM(ps, partial(torch.optim.SGD, lr=LR, momentum=0.9), rho=RHO),
    ):
        params = split(w)
        closure = closure_for(params, a, target)
        optimizer = make(params)
        for _ in range(3):
            optimizer.step(closure)
        results.append(flat(params))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


def test_groups_and_state_are_the_base_optimizers():
    a, target, w = quadratic(3)
    params = split(w)
    closure = closure_for(params, a, target)
    optimizer = SAM(params, partial(torch.optim.SGD, lr=LR, momentum=0.9))
    assert optimizer.param_groups is optimizer.base_optimizer.param_groups
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** (step + 1))
    assert optimizer.base_optimizer.param_groups[0]["lr"] == pytest.approx(LR / 2)
    optimizer.step(closure)
    scheduler.step()
    assert optimizer.base_optimizer.param_groups[0]["lr"] == pytest.approx(LR / 4)
    saved = optimizer.state_dict()
    assert all("momentum_buffer" in s for s in saved["state"].values())

    # A fresh SAM loaded from the state dict continues exactly like the original.
    twin_params = [p.detach().clone().requires_grad_() for p in params]
    twin = SAM(twin_params, partial(torch.optim.SGD, lr=1.0, momentum=0.9))
    twin.load_state_dict(copy.deepcopy(saved))
    assert twin.param_groups is twin.base_optimizer.param_groups
    assert twin.state is twin.base_optimizer.state
    twin_closure = closure_for(twin_params, a, target)
    optimizer.step(closure)
    twin.step(twin_closure)
    torch.testing.assert_close(flat(twin_params), flat(params), rtol=0, atol=0)

    clone = copy.deepcopy(optimizer)
    assert (clone.rho, clone.adaptive, clone.perturbation) == (0.05, False, "local")
    assert clone.param_groups is clone.base_optimizer.param_groups


def test_no_gradients_means_no_step():
    """With no gradients (SWA's BatchNorm epoch skips backward) SAM leaves the weights alone."""
    p = torch.ones(3, requires_grad=True)
    optimizer = SAM([p], partial(torch.optim.SGD, lr=LR, momentum=0.9))
    calls = []
    optimizer.step(lambda: calls.append(1) or torch.zeros(()))
    assert calls == [1]
    assert torch.equal(p.detach(), torch.ones(3))


def test_step_without_closure_is_refused():
    optimizer = SAM([torch.ones(2, requires_grad=True)], torch.optim.SGD, lr=LR)
    with pytest.raises(RuntimeError, match="closure"):
        optimizer.step()


def test_bn_frozen_restores_running_statistics_exactly():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.BatchNorm1d(5, momentum=None)
    )
    net(torch.randn(8, 4))
    before = copy.deepcopy(net.state_dict())
    twin = copy.deepcopy(net)
    x = torch.randn(8, 4) * 3 + 1
    with bn_frozen(net):
        out = net(x)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    # Inside, the layers still normalised with the batch's own statistics.
    assert torch.equal(out, twin(x))
    assert int(net[1].num_batches_tracked) == 1


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"rho": 0.0}, "optim.rho"),
        ({"rho": -0.1}, "optim.rho"),
        ({"eps": 0.0}, "optim.eps"),
        ({"perturbation": "global"}, "optim.perturbation"),
        ({"base_optimizer": torch.optim.LBFGS}, "optim.base_optimizer"),
        ({"base_optimizer": partial(torch.optim.LBFGS, lr=1.0)}, "optim.base_optimizer"),
        ({"base_optimizer": partial(SAM, base_optimizer=torch.optim.SGD)}, "optim.base_optimizer"),
        ({"base_optimizer": lambda groups: torch.optim.LBFGS(groups)}, "optim.base_optimizer"),
    ],
    ids=["rho=0", "rho<0", "eps=0", "perturbation", "lbfgs", "lbfgs-partial", "sam", "lambda"],
)
def test_bad_arguments_raise_config_error_naming_the_key(kwargs, key):
    arguments = {"base_optimizer": partial(torch.optim.SGD, lr=LR), **kwargs}
    with pytest.raises(ConfigError, match=rf"^{key}: got"):
        SAM([torch.ones(2, requires_grad=True)], **arguments)


def compose_train(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides)


def test_sam_and_asam_configs_wrap_the_sgd_config():
    sgd = compose_train(["optim=sgd"]).optim
    for name in ("sam", "asam"):
        cfg = compose_train([f"optim={name}"])
        validate(cfg)
        base = {k: v for k, v in cfg.optim.base_optimizer.items()}
        assert base == {k: v for k, v in sgd.items()}
    assert compose_train(["optim=asam"]).optim.adaptive is True


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["optim.rho=0"], r"optim\.rho"),
        (["optim.rho=-1"], r"optim\.rho"),
        (["optim.perturbation=everywhere"], r"optim\.perturbation"),
        (["optim.base_optimizer._target_=torch.optim.LBFGS"], r"optim\.base_optimizer"),
        (["optim.base_optimizer._target_=lsuite.optim.sam.SAM"], r"optim\.base_optimizer"),
        (["trainer.precision=16-mixed"], r"trainer\.precision"),
        (["trainer.precision=16-true"], r"trainer\.precision"),
        (["trainer.accumulate_grad_batches=2"], r"trainer\.accumulate_grad_batches"),
    ],
    ids=["rho=0", "rho<0", "perturbation", "lbfgs", "sam-in-sam", "fp16", "fp16-true", "accum"],
)
def test_validate_refuses_bad_sam_settings_before_training(overrides, key):
    cfg = compose_train(["optim=sam", *overrides])
    with pytest.raises(ConfigError, match=rf"^{key}: got"):
        validate(cfg)


def test_validate_refuses_sam_without_base_optimizer():
    cfg = compose_train(["optim=sam"])
    with open_dict(cfg):
        del cfg.optim.base_optimizer
    with pytest.raises(ConfigError, match=r"^optim\.base_optimizer: got None"):
        validate(cfg)


def test_bf16_is_accepted():
    validate(compose_train(["optim=asam", "trainer.precision=bf16-mixed"]))


def test_cli_rho_zero_exits_2_with_one_line(tmp_path):
    env = command_env()
    result = run_timed(
        [sys.executable, "-m", "lsuite.train", "optim=sam", "optim.rho=0"],
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lsuite-train: error: optim.rho: got 0; expected a number > 0")
    assert not list(tmp_path.iterdir())  # nothing was built or written
