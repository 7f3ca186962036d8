"""Subspace (Wortsman et al.): sampling, combination, regulariser, convex optimality, probing."""

from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from lsuite.errors import ConfigError
from lsuite.functional.simplex_draws import sample_simplex_point
from lsuite.model.mlp import MLP
from lsuite.model.subspace import (
    Subspace,
    cosine_squared,
    evaluation_points,
    sample_simplex,
)


def _module(net=None, **kwargs):
    net = net if net is not None else MLP(input_shape=(6,), num_classes=3, width=8)
    module = Subspace(net, partial(torch.optim.SGD, lr=0.1), num_classes=3, **kwargs)
    module.log = lambda *args, **kw: None  # no Trainer here
    return module


@pytest.mark.parametrize("num_vertices", [2, 3, 5])
def test_a_training_draw_is_sample_simplex_in_floats(num_vertices):
    first, second = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    for _ in range(50):
        expected = sample_simplex(num_vertices, 1, first)[0]
        drawn = torch.tensor(sample_simplex_point(num_vertices, second), dtype=torch.float64)
        torch.testing.assert_close(drawn, expected, rtol=0, atol=1e-15)


def test_sample_simplex_is_uniform_on_the_simplex():
    points = sample_simplex(3, 20000, torch.Generator().manual_seed(0))
    assert points.shape == (20000, 3) and (points >= 0).all()
    torch.testing.assert_close(points.sum(dim=1), torch.ones(20000, dtype=torch.float64))
    # Dirichlet(1, 1, 1): mean 1/3, variance (1/3)(2/3)/4 = 1/18 per coordinate
    assert points.mean(dim=0).sub(1 / 3).abs().max() < 0.01
    assert points.var(dim=0).sub(1 / 18).abs().max() < 0.003
    line = sample_simplex(2, 20000, torch.Generator().manual_seed(1))[:, 1]
    assert np.histogram(line.numpy(), bins=4, range=(0, 1))[0].min() > 4700  # alpha ~ U(0, 1)


def test_cosine_squared_equals_hand_computation():
    g = torch.Generator().manual_seed(0)
    points = torch.randn(3, 27, generator=g)
    cos2, cosine = cosine_squared(points, 0, 2)
    u, v = points[0].numpy(), points[2].numpy()
    expected = u @ v / np.sqrt((u @ u) * (v @ v))
    assert cosine.item() == pytest.approx(expected, rel=1e-5)
    assert cos2.item() == pytest.approx(expected**2, rel=1e-5)
    same = torch.stack([points[0], 3 * points[0]])
    assert cosine_squared(same, 0, 1)[0].item() == pytest.approx(1.0)
    assert cosine_squared(torch.stack([points[0], -points[0]]), 0, 1)[1].item() == pytest.approx(-1)


def test_module_regularises_the_weights_only():
    module = _module(num_vertices=3)
    stacks = module.stacked()
    weights = {n: stacks[n] for n in ("hidden.0.weight", "hidden.1.weight", "head.weight")}
    u = torch.cat([v[1].flatten() for v in weights.values()]).double()
    w = torch.cat([v[2].flatten() for v in weights.values()]).double()
    expected = (u @ w / (u.norm() * w.norm())).item()
    assert module.cosine(1, 2)[1].item() == pytest.approx(expected, rel=1e-5)


def test_evaluation_points():
    line = evaluation_points(2, 5)
    assert [label for label, _ in line] == [f"alpha={a:.2f}" for a in (0, 0.25, 0.5, 0.75, 1)]
    assert line[2][1] == [0.5, 0.5]
    simplex = evaluation_points(3, 5)
    assert [label for label, _ in simplex] == [
        "vertex=0", "vertex=1", "vertex=2", "edge=0-1", "edge=0-2", "edge=1-2", "center",
    ]  # fmt: skip


def test_vertices_start_as_independent_draws_of_the_init():
    torch.manual_seed(0)
    net = MLP(input_shape=(6,), num_classes=3, width=8)
    first = {n: p.detach().clone() for n, p in net.named_parameters()}
    module = _module(net, num_vertices=3)
    assert list(module.net.parameters()) == []  # the network is a skeleton
    sizes = [p.numel() for p in first.values()]
    weights = sum(p.numel() for p in first.values() if p.ndim >= 2)
    assert [p.shape for p in module.parameters()] == [(3, weights), (3, sum(sizes) - weights)]
    for name, stack in module.stacked().items():
        torch.testing.assert_close(stack[0], first[name])
        for k in (1, 2):  # the same entries, in another order
            assert torch.equal(
                stack[k].flatten().sort().values, first[name].flatten().sort().values
            )
            if first[name].numel() > 4:
                assert not torch.equal(stack[k], first[name])


def test_midpoint_forward_and_probe_network():
    module = _module(num_vertices=2)
    x = torch.randn(4, 6)
    stacks = module.stacked()
    mean = {n: v.mean(dim=0) for n, v in stacks.items()}
    torch.testing.assert_close(module(x), functional_call(module.net, mean, (x,)))
    network = module.probe_network()
    torch.testing.assert_close(network(x), module(x))
    assert all(p.requires_grad for p in network.parameters())
    with torch.no_grad():
        next(network.parameters()).add_(1.0)  # a copy: the module is unchanged
    torch.testing.assert_close(module.stacked()["head.bias"], stacks["head.bias"])


def test_layerwise_draws_one_point_per_layer():
    module = _module(layerwise=True)
    assert module.num_groups == 3  # hidden.0, hidden.1, head
    assert module.groups["hidden.0.weight"] == module.groups["hidden.0.bias"]
    weights, pair = module._next_draw()
    assert weights.shape == (3, 2) and pair == (0, 1)
    point = module.point(weights)
    for name, stack in module.stacked().items():
        w = weights[module.groups[name]].float()
        torch.testing.assert_close(point[name], w[0] * stack[0] + w[1] * stack[1])


def test_training_step_adds_the_regulariser_and_draws_a_point_per_step():
    torch.manual_seed(0)
    module = _module(beta=2.0, num_vertices=3)
    module.should_log_training_step = lambda: True
    batch = (torch.randn(8, 6), torch.randint(0, 3, (8,)))
    objective = module.training_step(batch, 0)
    weights, (i, j) = module._draw
    logits = functional_call(module.net, module.point(weights), (batch[0],))
    cos2 = module.cosine(i, j)[0]
    torch.testing.assert_close(objective, F.cross_entropy(logits, batch[1]) + 2.0 * cos2)
    assert module.weight_names == ["hidden.0.weight", "hidden.1.weight", "head.weight"]
    module.training_step(batch, 1)
    assert module._draw[0] != weights  # one point's K floats
    # a SAM second pass evaluates the same point as the first
    drawn = module._draw
    module.should_log_training_step = lambda: False
    module.training_step(batch, 1)
    assert module._draw is drawn


def test_point_generator_is_saved_in_checkpoints():
    module = _module(seed=3)
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    expected = [module._next_draw()[0] for _ in range(3)]
    other = _module(seed=99)
    other.on_load_checkpoint(checkpoint)
    for e in expected:
        torch.testing.assert_close(other._next_draw()[0], e)


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="num_vertices: got 1"):
        _module(num_vertices=1)
    with pytest.raises(ConfigError, match="beta: got -1"):
        _module(beta=-1)
    with pytest.raises(ConfigError, match="eval_points: got 1"):
        _module(eval_points=1)


def test_convex_problem_trains_a_line_of_optima():
    """Logistic regression with L2 has one minimum; every point of the trained line reaches it."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g, dtype=torch.float64)
    y = (x @ torch.randn(5, 3, generator=g, dtype=torch.float64)).argmax(dim=1)
    l2 = 0.05

    def objective(params):
        logits = functional_call(net, params, (x,))
        return F.cross_entropy(logits, y) + 0.5 * l2 * sum(p.pow(2).sum() for p in params.values())

    torch.manual_seed(0)
    net = nn.Linear(5, 3).double()
    # the optimum, by L-BFGS on the strictly convex objective
    best = {n: p.detach().clone().requires_grad_() for n, p in net.named_parameters()}
    lbfgs = torch.optim.LBFGS(list(best.values()), max_iter=500, tolerance_grad=1e-12)
    lbfgs.step(lambda: (lbfgs.zero_grad(), (loss := objective(best)), loss.backward())[1])
    optimum = objective(best).item()

    module = Subspace(
        net, partial(torch.optim.SGD, lr=1.0, momentum=0.5), num_classes=3, l2=l2, beta=0.0
    )
    module.log = lambda *args, **kw: None
    module.should_log_training_step = lambda: True
    optimizer = module.configure_optimizers()
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 400)
    start = objective(module.point(torch.tensor([1.0, 0.0]))).item()
    for step in range(400):
        optimizer.zero_grad()
        module.training_step((x, y), step).backward()
        optimizer.step()
        scheduler.step()
    assert start - optimum > 0.1  # the start was far from optimal
    for alpha in torch.linspace(0, 1, 11).tolist():
        value = objective(module.point(torch.tensor([1 - alpha, alpha]))).item()
        assert value - optimum < 1e-3, (alpha, value, optimum)
    # and the endpoints have met at the unique minimiser
    for name, stack in module.stacked().items():
        torch.testing.assert_close(stack[0], stack[1], atol=0.05, rtol=0)
        torch.testing.assert_close(stack.mean(dim=0), best[name].detach(), atol=0.02, rtol=0)


def test_simplex_vertices_all_train():
    module = _module(num_vertices=4)
    module.should_log_training_step = lambda: True
    before = {n: v.detach().clone() for n, v in module.stacked().items()}
    optimizer = module.configure_optimizers()
    batch = (torch.randn(16, 6), torch.randint(0, 3, (16,)))
    for step in range(5):
        optimizer.zero_grad()
        module.training_step(batch, step).backward()
        optimizer.step()
    for name, stack in module.stacked().items():
        for k in range(4):
            assert not torch.equal(stack[k], before[name][k]), (name, k)


@pytest.mark.parametrize(
    "kwargs",
    [{"beta": 2.0}, {"num_vertices": 3, "l2": 0.1}, {"layerwise": True, "beta": 0.5}],
    ids=["line", "simplex-l2", "layerwise"],
)
def test_training_gradient_equals_autograd_of_the_objective(kwargs):
    """The one-node combination's gradient equals autograd's through the plain expression."""
    torch.manual_seed(0)
    net = MLP(input_shape=(6,), num_classes=3, width=8).double()
    module = _module(net, **kwargs)
    module.should_log_training_step = lambda: True
    batch = (torch.randn(8, 6, dtype=torch.float64), torch.randint(0, 3, (8,)))
    module.training_step(batch, 0).backward()
    weights, (i, j) = module._draw
    weights = torch.as_tensor(weights, dtype=torch.float64).reshape(-1, module.num_vertices)
    vertices = module.vertices.detach().requires_grad_()
    params = {
        n: (weights[module.groups[n]].double() @ vertices[:, a:b]).view(module._like[n].shape)
        for n, (a, b) in module._slices.items()
    }
    objective = F.cross_entropy(functional_call(module.net, params, (batch[0],)), batch[1])
    objective = objective + 0.5 * module.l2 * sum(p.pow(2).sum() for p in params.values())
    u, v = vertices[i, : module._num_weights], vertices[j, : module._num_weights]
    objective = objective + module.beta * (u @ v / (u.norm() * v.norm())) ** 2
    objective.backward()
    grad = torch.cat([module.weight_vertices.grad, module.other_vertices.grad], dim=1)
    torch.testing.assert_close(grad, vertices.grad, rtol=1e-12, atol=1e-14)
