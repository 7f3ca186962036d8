"""RandomSubspace (Li et al.): w = w0 + P z; with P = I it is ordinary training."""

import copy
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from lsuite.errors import ConfigError
from lsuite.model.classifier import Classifier
from lsuite.model.mlp import MLP
from lsuite.model.random_subspace import RandomSubspace, _Point


def _net():
    torch.manual_seed(0)
    return MLP(input_shape=(6,), num_classes=3, width=8).double()


def _quiet(module):
    module.log = lambda *args, **kw: None  # no Trainer here
    return module


def test_only_z_trains_and_starts_at_w0():
    net = _net()
    w0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    module = RandomSubspace(copy.deepcopy(net), partial(torch.optim.SGD, lr=0.1), 3, dim=5)
    assert [n for n, p in module.named_parameters() if p.requires_grad] == ["z"]
    assert module.z.shape == (5,) and not module.z.any()
    x = torch.randn(4, 6, dtype=torch.float64)
    torch.testing.assert_close(module(x), net(x))
    for name, value in module.point().items():
        torch.testing.assert_close(value, w0[name])


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_full_dimension_identity_projection_equals_ordinary_training(momentum):
    net = _net()
    size = sum(p.numel() for p in net.parameters())
    optimizer = partial(torch.optim.SGD, lr=0.2, momentum=momentum)
    plain = _quiet(Classifier(copy.deepcopy(net), optimizer, 3, l2=0.01))
    sub = _quiet(RandomSubspace(copy.deepcopy(net), optimizer, 3, l2=0.01, dim=size))
    sub.z.data = sub.z.data.double()
    sub.projection = lambda z: z  # P = I
    plain_opt, sub_opt = plain.configure_optimizers(), sub.configure_optimizers()
    g = torch.Generator().manual_seed(1)
    for step in range(5):
        batch = (torch.randn(16, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,)))
        for module, opt in ((plain, plain_opt), (sub, sub_opt)):
            opt.zero_grad()
            module.training_step(batch, step).backward()
            opt.step()
    trained = dict(plain.net.named_parameters())
    for name, value in sub.point().items():
        torch.testing.assert_close(value, trained[name].detach(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("projection", ["dense", "sparse", "fastfood"])
@pytest.mark.parametrize("per_layer", [False, True])
def test_point_is_w0_plus_pz(projection, per_layer):
    net = _net()
    module = RandomSubspace(
        net, partial(torch.optim.SGD, lr=0.1), 3, dim=4, projection=projection, per_layer=per_layer
    )
    module.z.data = torch.randn(4)
    p = module.projection.matrix().float()
    delta = p @ module.z.detach()
    w0 = torch.cat([t.detach().flatten() for t in module.net.parameters()])
    point = torch.cat([t.detach().flatten() for t in module.point().values()])
    torch.testing.assert_close(point, w0 + delta.double(), atol=1e-6, rtol=1e-6)


def test_gradient_reaches_z_through_p():
    module = _quiet(RandomSubspace(_net(), partial(torch.optim.SGD, lr=0.1), 3, dim=3))
    batch = (torch.randn(8, 6, dtype=torch.float64), torch.randint(0, 3, (8,)))
    module.training_step(batch, 0).backward()
    assert module.z.grad is not None and module.z.grad.abs().sum() > 0
    assert all(p.grad is None for p in module.net.parameters())


@pytest.mark.parametrize("projection", ["dense", "fastfood"])
def test_second_derivative_in_z_equals_the_explicit_map(projection):
    # the point's node skips Fastfood's own node in its forward and first-order backward;
    # with create_graph its gradient must still be differentiable: compare with w0 + P z by hand
    module = RandomSubspace(
        _net(), partial(torch.optim.SGD, lr=0.1), 3, dim=5, projection=projection
    ).double()
    z = torch.randn(5, dtype=torch.float64)
    module.z.data = z.clone()
    p = module.projection.matrix()
    _, w0 = module.initial_weights()

    def loss_of(weights):
        return sum(torch.sin(w).pow(2).sum() for w in weights)

    grad = torch.autograd.grad(loss_of(module.point().values()), module.z, create_graph=True)[0]
    hvp = torch.autograd.grad(grad.pow(2).sum(), module.z)[0]
    z_ = z.clone().requires_grad_(True)
    flat = w0.detach() + p @ z_
    grad_ = torch.autograd.grad(loss_of([flat]), z_, create_graph=True)[0]
    hvp_ = torch.autograd.grad(grad_.pow(2).sum(), z_)[0]
    torch.testing.assert_close(grad, grad_, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(hvp, hvp_, rtol=1e-10, atol=1e-12)


def test_probe_network_is_the_network_at_the_point():
    module = RandomSubspace(_net(), partial(torch.optim.SGD, lr=0.1), 3, dim=3)
    module.z.data = torch.ones(3)
    x = torch.randn(5, 6, dtype=torch.float64)
    network = module.probe_network()
    torch.testing.assert_close(network(x), module(x))
    assert all(p.requires_grad for p in network.parameters())
    logits = functional_call(module.net, module.point(), (x,))
    assert F.cross_entropy(logits, torch.zeros(5, dtype=torch.long)).isfinite()


def test_projection_follows_the_seed():
    a = RandomSubspace(_net(), partial(torch.optim.SGD, lr=0.1), 3, dim=3, seed=1)
    b = RandomSubspace(_net(), partial(torch.optim.SGD, lr=0.1), 3, dim=3, seed=1)
    assert torch.equal(a.projection.matrix(), b.projection.matrix())


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="dim: got 0"):
        RandomSubspace(_net(), partial(torch.optim.SGD, lr=0.1), 3, dim=0)
    with pytest.raises(ConfigError, match="projection: got 'identity'; expected one of dense"):
        RandomSubspace(_net(), partial(torch.optim.SGD, lr=0.1), 3, projection="identity")


@pytest.mark.parametrize("kind", ["dense", "sparse", "fastfood"])
@pytest.mark.parametrize("per_layer", [False, True], ids=["one block", "per layer"])
def test_gradient_is_the_projected_gradient_of_the_weights(kind, per_layer):
    """The one-node point's gradient in z is P^T of the loss gradient in w (float64)."""
    net = _net()
    module = _quiet(
        RandomSubspace(
            net, partial(torch.optim.SGD, lr=0.1), 3, l2=0.1, dim=6, projection=kind,
            per_layer=per_layer,
        )
    )  # fmt: skip
    module.z.data = torch.randn(6, dtype=torch.float64)
    batch = (torch.randn(8, 6, dtype=torch.float64), torch.randint(0, 3, (8,)))
    module.training_step(batch, 0).backward()
    point = {n: v.detach().requires_grad_() for n, v in module.point().items()}
    logits = functional_call(module.net, point, (batch[0],))
    objective = F.cross_entropy(logits, batch[1])
    objective = objective + 0.05 * sum(p.pow(2).sum() for p in point.values())
    grads = torch.autograd.grad(objective, list(point.values()))
    flat = torch.cat([g.reshape(-1) for g in grads])
    expected = module.projection.matrix().T @ flat
    torch.testing.assert_close(module.z.grad, expected, rtol=1e-12, atol=1e-14)


def test_cached_initial_weights_follow_a_load():
    module = RandomSubspace(_net(), partial(torch.optim.SGD, lr=0.1), 3, dim=4)
    _, first = module.initial_weights()
    assert module.initial_weights()[1] is first  # cached
    state = {k: v + 1 for k, v in module.state_dict().items()}
    module.load_state_dict(state)
    _, second = module.initial_weights()
    torch.testing.assert_close(second, first + 1)


@pytest.mark.parametrize("kind", ["dense", "fastfood"])
def test_point_node_passes_gradcheck_with_outputs_left_without_gradient(kind):
    """Finite differences of the one-node ``w0 + P z``, also when some outputs get no gradient."""
    module = RandomSubspace(_net(), partial(torch.optim.SGD, lr=0.1), 3, dim=5, projection=kind)
    _, flat_w0 = module.initial_weights()

    def point(z):
        return _Point.apply(z, flat_w0, module.projection, module._shapes, module._sizes)

    z = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(point, (z,), check_undefined_grad=True)
