"""align(): a new aligned copy, inputs untouched, the function check, bad input."""

import copy

import pytest
import torch

from lsuite.align import align
from lsuite.errors import ConfigError
from lsuite.model.mlp import MLP


def _fingerprint(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, model.training


@pytest.mark.parametrize("method", ["weight", "activation"])
def test_align_returns_a_new_copy_computing_the_same_function(zoo, method):
    a, b = zoo.make("resnet-batch", seed=0), zoo.make("resnet-batch", seed=1)
    b.train()
    before_a, before_b = _fingerprint(a), _fingerprint(b)
    batches = [(zoo.inputs("resnet-batch", seed=s), torch.zeros(6)) for s in range(2)]
    result = align(a, b, method=method, batches=batches)
    assert result.module is not b
    assert result.max_output_diff < 1e-10
    assert result.method == method
    for model, (state, training) in ((a, before_a), (b, before_b)):
        assert model.training == training
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        moved = result.module.eval()(batches[0][0])
        torch.testing.assert_close(moved, copy.deepcopy(b).eval()(batches[0][0]))
    # aligned weights are closer to the reference than the originals
    ref = a.state_dict()
    dist = lambda s: sum(((s[k] - ref[k]) ** 2).sum() for k in ref if s[k].is_floating_point())  # noqa: E731
    assert dist(result.module.state_dict()) < dist(b.state_dict())


def test_align_weight_matching_from_example_inputs(zoo):
    a, b = zoo.make("cnn1d", seed=0), zoo.make("cnn1d", seed=1)
    result = align(a, b, example_inputs=zoo.inputs("cnn1d"), seed=3)
    assert result.objective[-1] >= result.objective[0]
    assert set(result.perms) == set(result.spec.groups)


def test_bad_input_is_one_line():
    a, b = MLP((40,), 10, width=16), MLP((40,), 10, width=8)
    with pytest.raises(ConfigError, match=r"key 'hidden.0.weight' has shape \(16, 40\) in refer"):
        align(a, b, example_inputs=torch.randn(2, 40))
    with pytest.raises(ConfigError, match="method: got 'other'"):
        align(a, a, method="other", example_inputs=torch.randn(2, 40))
    with pytest.raises(ConfigError, match="example_inputs: got None and no batches"):
        align(a, a)
    with pytest.raises(ConfigError, match="method='activation' needs probe batches"):
        align(a, a, method="activation", example_inputs=torch.randn(2, 40))
