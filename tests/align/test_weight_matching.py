"""Weight matching: monotone objective, planted permutations recovered, zero barrier."""

import copy

import pytest
import torch
import torch.nn.functional as F

from lsuite.align import (
    apply_permutation,
    interpolate_state,
    permutation_spec,
    random_perms,
    weight_matching,
)
from lsuite.errors import ConfigError
from lsuite.model.mlp import MLP
from lsuite.model.resnet import ResNet


def test_objective_is_monotone_on_a_one_hidden_layer_toy():
    torch.manual_seed(0)
    a, b = MLP((10,), 3, width=24, depth=1).double(), MLP((10,), 3, width=24, depth=1).double()
    spec = permutation_spec(a, torch.randn(2, 10, dtype=torch.float64))
    for seed in range(3):
        result = weight_matching(spec, a.state_dict(), b.state_dict(), seed=seed)
        steps = torch.tensor(result.objective)
        assert torch.all(steps[1:] >= steps[:-1] - 1e-12)
        assert steps[-1] > steps[0]
        assert result.iterations < 100


@pytest.mark.parametrize("name", ["mlp", "cnn1d-batch-avg", "resnet-group", "resnet-none"])
def test_planted_permutation_is_recovered(zoo, name):
    model = zoo.make(name)
    spec = permutation_spec(model, zoo.inputs(name))
    planted = random_perms(spec, torch.Generator().manual_seed(3))
    state = model.state_dict()
    permuted = apply_permutation(spec, planted, state)
    result = weight_matching(spec, permuted, state)
    for name, perm in planted.items():
        assert torch.equal(result.perms[name], perm), name


def _curve(model, state_a, state_b, x, y, alphas=5):
    losses = []
    for alpha in torch.linspace(0, 1, alphas).tolist():
        net = copy.deepcopy(model)
        net.load_state_dict(interpolate_state(state_a, state_b, alpha))
        with torch.no_grad():
            losses.append(F.cross_entropy(net(x), y).item())
    return torch.tensor(losses, dtype=torch.float64)


def test_planted_resnet20_with_batch_norm_has_zero_barrier_after_matching(zoo):
    torch.manual_seed(0)
    model = ResNet((1, 8, 8), 10, depth=20, width=1.0).double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(32, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (32,))
    spec = permutation_spec(model, x)
    planted = random_perms(spec, torch.Generator().manual_seed(5))
    state = model.state_dict()
    other = apply_permutation(spec, planted, state)
    naive = _curve(model, state, other, x, y)
    assert (naive - naive[0]).abs().max() > 1e-2  # the naive line leaves the solution
    result = weight_matching(spec, state, other)
    aligned = apply_permutation(spec, result.perms, other)
    for key, value in state.items():
        assert torch.equal(aligned[key], value), key  # incl. running stats and residual streams
    curve = _curve(model, state, aligned, x, y)
    barrier = curve.max() - 0.5 * (curve[0] + curve[-1])
    assert abs(barrier) < 1e-12 and (curve - curve[0]).abs().max() < 1e-12


def test_max_iter_is_checked(zoo):
    model = zoo.make("mlp")
    spec = permutation_spec(model, zoo.inputs("mlp"))
    with pytest.raises(ConfigError, match="max_iter: got 0"):
        weight_matching(spec, model.state_dict(), model.state_dict(), max_iter=0)


def test_threads_are_restored_and_do_not_change_the_result(zoo):
    model, other = zoo.make("resnet-batch"), zoo.make("resnet-batch", seed=1)
    spec = permutation_spec(model, zoo.inputs("resnet-batch"))
    before = torch.get_num_threads()
    one = weight_matching(spec, model.state_dict(), other.state_dict())
    assert torch.get_num_threads() == before
    kept = weight_matching(spec, model.state_dict(), other.state_dict(), threads=None)
    for name, perm in one.perms.items():
        assert torch.equal(kept.perms[name], perm), name
    assert one.objective == pytest.approx(kept.objective, rel=1e-12)
    with pytest.raises(ConfigError, match="threads: got 0"):
        weight_matching(spec, model.state_dict(), other.state_dict(), threads=0)
