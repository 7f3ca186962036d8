"""Permutation specs derived by tracing: function preserved, hand-written specs, bad input."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lsuite.align import (
    apply_permutation,
    check_spec,
    invert,
    permutation_spec,
    random_perms,
)
from lsuite.errors import ConfigError
from lsuite.model.mlp import MLP
from lsuite.model.resnet import ResNet


def _axes(spec):
    return {frozenset((r.name, r.axis, r.inner) for r in g.axes) for g in spec.groups.values()}


def test_permuted_model_computes_the_same_function(zoo, case_name):
    model = zoo.make(case_name)
    x = zoo.inputs(case_name)
    spec = permutation_spec(model, x)
    perms = random_perms(spec, torch.Generator().manual_seed(1))
    state = model.state_dict()
    permuted = apply_permutation(spec, perms, state)
    other = copy.deepcopy(model)
    other.load_state_dict(permuted)
    torch.testing.assert_close(other(x), model(x), rtol=1e-12, atol=1e-12)
    # the input was not changed, and something did move (except where everything is fixed)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    moved = any(not torch.equal(permuted[k], state[k]) for k in state)
    assert moved == (len(spec.groups) > 0)
    # undoing the permutations gives the original state back
    back = apply_permutation(spec, {k: invert(p) for k, p in perms.items()}, permuted)
    # (groups commute: each acts on its own axes)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_input_output_and_counters_are_never_permuted(zoo, case_name):
    model = zoo.make(case_name)
    spec = permutation_spec(model, zoo.inputs(case_name))
    named = {(r.name, r.axis) for g in spec.groups.values() for r in g.axes}
    assert not any(name.endswith("num_batches_tracked") for name, _ in named)
    assert ("head.weight", 0) not in named and ("head.bias", 0) not in named
    first = next(k for k in model.state_dict() if k.endswith("weight"))
    assert (first, 1) not in named


def _ainsworth_mlp(depth):
    """Ainsworth et al.'s ``mlp_permutation_spec`` written out for lsuite's MLP names."""
    groups = []
    for i in range(depth):
        axes = {(f"hidden.{i}.weight", 0, 1), (f"hidden.{i}.bias", 0, 1)}
        axes.add((f"hidden.{i + 1}.weight", 1, 1) if i + 1 < depth else ("head.weight", 1, 1))
        groups.append(frozenset(axes))
    return set(groups)


def _ainsworth_resnet(blocks):
    """Ainsworth et al.'s ``resnet20_permutation_spec`` (conv/norm/easyblock/shortcutblock)."""

    def norm(name, group):
        for key in ("weight", "bias", "running_mean", "running_var"):
            group.add((f"{name}.{key}", 0, 1))

    streams = [set(), set(), set()]
    groups = []
    streams[0].add(("stem.conv.weight", 0, 1))
    norm("stem.norm", streams[0])
    for s in range(3):
        for b in range(blocks):
            name = f"stages.{s}.{b}"
            inside = set()
            source = streams[s - 1] if (b == 0 and s > 0) else streams[s]
            source.add((f"{name}.conv1.weight", 1, 1))
            inside.add((f"{name}.conv1.weight", 0, 1))
            norm(f"{name}.norm1", inside)
            inside.add((f"{name}.conv2.weight", 1, 1))
            streams[s].add((f"{name}.conv2.weight", 0, 1))
            norm(f"{name}.norm2", streams[s])
            if b == 0 and s > 0:  # shortcutblock
                source.add((f"{name}.shortcut.conv.weight", 1, 1))
                streams[s].add((f"{name}.shortcut.conv.weight", 0, 1))
                norm(f"{name}.shortcut.norm", streams[s])
            groups.append(frozenset(inside))
    streams[2].add(("head.weight", 1, 1))
    return set(groups) | {frozenset(s) for s in streams}


def test_derived_specs_equal_ainsworth_hand_written_specs():
    mlp = MLP((1, 28, 28), 10, width=32, depth=3)
    assert _axes(permutation_spec(mlp, torch.randn(2, 1, 28, 28))) == _ainsworth_mlp(3)
    resnet = ResNet((3, 32, 32), 10, depth=20)
    spec = permutation_spec(resnet, torch.randn(2, 3, 32, 32))
    assert _axes(spec) == _ainsworth_resnet(3)
    assert len(spec.groups) == 12


def test_group_norm_permutes_within_groups(zoo):
    model = zoo.make("resnet-group")
    spec = permutation_spec(model, zoo.inputs("resnet-group"))
    for group in spec.groups.values():
        assert group.chunk == group.size // 4
    perms = random_perms(spec, torch.Generator().manual_seed(0))
    for name, perm in perms.items():
        chunk = spec.groups[name].chunk
        assert torch.equal(perm // chunk, torch.arange(perm.numel()) // chunk)


def test_flatten_between_conv_and_linear_expands_channels(zoo):
    spec = permutation_spec(zoo.make("cnn1d"), zoo.inputs("cnn1d"))
    last = [g for g in spec.groups.values() if any(r.name == "head.weight" for r in g.axes)]
    (ref,) = [r for r in last[0].axes if r.name == "head.weight"]
    assert (ref.axis, ref.inner) == (1, 10)  # 12 channels x 10 positions after two poolings


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        h = self.inp(x)
        h, _ = self.attn(h, h, h)
        return self.out(h).mean(1)


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.b = nn.Linear(8, 3)

    def forward(self, x):
        h = self.a(x)
        h = torch.cumsum(h, dim=-1)
        return self.b(h)


def test_unpermutable_op_is_an_error_naming_module_and_op():
    with pytest.raises(ConfigError, match=r"module MultiheadAttention in module 'attn'"):
        permutation_spec(_Attention(), torch.randn(2, 4, 6))
    with pytest.raises(ConfigError, match=r"function torch.cumsum in module '<root>'"):
        permutation_spec(_Custom(), torch.randn(2, 6))


def test_fixed_modules_are_held_fixed():
    model = _Attention().double().eval()
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    spec = permutation_spec(model, x, fixed=["attn"])
    assert spec.groups == {}  # both hidden axes touch the opaque attention
    mlp = MLP((40,), 10, width=16, depth=3)
    kept = permutation_spec(mlp, torch.randn(2, 40), fixed=["hidden.1"])
    assert list(kept.groups) == ["hidden.2"]
    with pytest.raises(ConfigError, match="fixed: got module 'nope'"):
        permutation_spec(model, x, fixed=["nope"])


class _Shared(nn.Module):
    """Weight sharing, a learned scale, and x.shape in forward."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 7)
        self.b = nn.Linear(7, 7)
        self.scale = nn.Parameter(torch.rand(7) + 0.5)
        self.norm = nn.LayerNorm(7)
        self.c = nn.Linear(7, 2)

    def forward(self, x):
        h = F.relu(self.a(x))
        h = h + self.b(h) * self.scale
        h = self.norm(h + F.gelu(self.b(h)))
        return self.c(h.reshape(x.shape[0], -1))


def test_shared_layers_parameters_and_layernorm():
    model = _Shared().double()
    x = torch.randn(3, 5, dtype=torch.float64)
    spec = permutation_spec(model, x)
    assert len(spec.groups) == 1
    (group,) = spec.groups.values()
    assert ("scale", 0, 1) in {(r.name, r.axis, r.inner) for r in group.axes}
    perms = random_perms(spec, torch.Generator().manual_seed(0))
    other = copy.deepcopy(model)
    other.load_state_dict(apply_permutation(spec, perms, model.state_dict()))
    torch.testing.assert_close(other(x), model(x))


def test_check_spec_names_the_key_and_shapes():
    spec = permutation_spec(MLP((40,), 10, width=16), torch.randn(2, 40))
    check_spec(spec, MLP((40,), 10, width=16))
    with pytest.raises(ConfigError, match=r"key 'hidden.0.weight' has shape \(8, 40\) in the mod"):
        check_spec(spec, MLP((40,), 10, width=8))
    with pytest.raises(ConfigError, match=r"names key 'hidden\.1\.weight'"):
        check_spec(spec, MLP((40,), 10, width=16, depth=1))


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = _Branchy()

    def forward(self, x):
        return self.inner(x)


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.a(x)
        return x


def test_tracing_failure_names_the_module():
    with pytest.raises(ConfigError, match=r"cannot trace module 'inner' \(_Branchy\)"):
        permutation_spec(_Untraceable(), torch.randn(2, 3))
