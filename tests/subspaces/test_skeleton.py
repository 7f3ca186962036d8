"""ParameterBinding equals torch.func.functional_call and leaves the network as it was."""

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

from lsuite.model.mlp import MLP
from lsuite.model.skeleton import ParameterBinding, strip_parameters


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.second = nn.Linear(4, 4)
        self.second.weight = self.first.weight  # tied

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


def _params(net, seed):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(p.shape, generator=g) for n, p in net.named_parameters()}


@pytest.mark.parametrize("make", [lambda: MLP(input_shape=(4,), num_classes=3, width=5), _Tied])
def test_binding_equals_functional_call_and_restores_the_slots(make):
    torch.manual_seed(0)
    net = make()
    params = _params(net, 1)
    x = torch.randn(6, 4)
    expected = functional_call(net, params, (x,))
    binding = ParameterBinding(net)
    before = {n: p for n, p in net.named_parameters(remove_duplicate=False)}
    assert torch.equal(binding(params, x), expected)
    after = dict(net.named_parameters(remove_duplicate=False))
    assert after.keys() == before.keys() and all(after[n] is before[n] for n in before)

    stripped = copy.deepcopy(net)
    strip_binding = ParameterBinding(stripped)
    strip_parameters(stripped)
    assert list(stripped.parameters()) == []  # every slot, the tied one included
    assert torch.equal(strip_binding(params, x), expected)
    assert list(stripped.parameters()) == []


def test_binding_restores_the_slots_on_error():
    net = MLP(input_shape=(4,), num_classes=3, width=5)
    binding = ParameterBinding(net)
    before = list(net.parameters())
    with pytest.raises(RuntimeError):
        binding(_params(net, 1), torch.randn(6, 7))  # wrong input width
    assert all(a is b for a, b in zip(net.parameters(), before, strict=True))


def test_binding_of_some_names_keeps_the_others():
    net = MLP(input_shape=(4,), num_classes=3, width=5)
    params = _params(net, 2)
    some = {n: v for n, v in params.items() if n.startswith("head.")}
    x = torch.randn(6, 4)
    binding = ParameterBinding(net, list(some))
    assert [name for _, _, name in binding.slots] == list(some)
    assert torch.equal(binding(some, x), functional_call(net, some, (x,)))


def test_binding_with_buffers_equals_functional_call_and_restores_them():
    from batch_norm_net import BatchNormNet

    torch.manual_seed(0)
    net = BatchNormNet().eval()
    params = {k: torch.randn_like(v) for k, v in net.named_parameters()}
    buffers = {"norm.running_mean": torch.randn(6), "norm.running_var": torch.rand(6) + 0.5}
    inputs = torch.randn(4, 5)
    own = {k: v.clone() for k, v in net.named_buffers()}
    got = ParameterBinding(net)(params, inputs, buffers=buffers)
    want = functional_call(net, {**buffers, **params}, (inputs,), strict=False)
    assert torch.equal(got, want)
    assert not torch.equal(got, ParameterBinding(net)(params, inputs))  # the buffers were used
    for name, value in net.named_buffers():
        assert torch.equal(value, own[name]), name  # the network's own buffers are back
