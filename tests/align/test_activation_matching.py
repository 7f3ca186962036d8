"""Activation matching: planted permutations recovered; split batches equal one process."""

import pytest
import torch

from lsuite.align import activation_matching, apply_permutation, permutation_spec, random_perms
from lsuite.align.spec import PermutationSpec
from lsuite.errors import ConfigError


def _permuted_copy(zoo, name):
    model = zoo.make(name)
    x = zoo.inputs(name, batch=16)
    spec = permutation_spec(model, x)
    planted = random_perms(spec, torch.Generator().manual_seed(2))
    other = zoo.make(name)
    other.load_state_dict(apply_permutation(spec, planted, model.state_dict()))
    return model, other, spec, planted


@pytest.mark.parametrize("name", ["mlp-gelu", "cnn1d", "resnet-batch", "resnet-group"])
def test_planted_permutation_is_recovered_from_activations(zoo, name):
    model, other, spec, planted = _permuted_copy(zoo, name)
    batches = [(zoo.inputs(name, batch=16, seed=s), torch.zeros(16)) for s in range(3)]
    result = activation_matching(spec, other, model, batches)
    # other = permuted model, so aligning model to other needs the planted permutations
    for group, perm in planted.items():
        assert torch.equal(result.perms[group], perm), group
        assert result.correlation[group] > 0.8  # 1 for live units, 0 for dead ReLUs


def test_split_batches_with_reduce_sum_equal_one_process(zoo):
    torch.manual_seed(0)
    a, b = zoo.make("mlp", seed=0), zoo.make("mlp", seed=1)
    spec = permutation_spec(a, zoo.inputs("mlp"))
    batches = [zoo.inputs("mlp", batch=8, seed=s) for s in range(4)]
    whole = activation_matching(spec, a, b, batches)
    other_rank = []
    activation_matching(spec, a, b, batches[2:], reduce_sum=lambda t: other_rank.append(t) or t)
    split = activation_matching(spec, a, b, batches[:2], reduce_sum=lambda t: t + other_rank[0])
    for group in spec.groups:
        assert torch.equal(whole.perms[group], split.perms[group])
        assert whole.correlation[group] == pytest.approx(split.correlation[group], abs=1e-12)


def test_hand_written_spec_without_activation_points_is_rejected(zoo):
    model = zoo.make("mlp")
    spec = permutation_spec(model, zoo.inputs("mlp"))
    bare = PermutationSpec(
        groups={k: type(g)(g.size, g.axes, g.chunk) for k, g in spec.groups.items()},
        shapes=spec.shapes,
    )
    with pytest.raises(ConfigError, match="has no activation points"):
        activation_matching(bare, model, model, [zoo.inputs("mlp")])
