"""Repairs at interpolated points: REPAIR's statistics met exactly; BatchNorm reset."""

import pytest
import torch

from lsuite.align import interpolated_state, permutation_spec
from lsuite.align.capture import traced_copy
from lsuite.align.repair import channel_moments, repair_targets
from lsuite.errors import ConfigError


@pytest.mark.parametrize("name", ["mlp-gelu", "resnet-none", "cnn2d-group-hidden"])
def test_repaired_midpoint_has_the_interpolated_channel_statistics(zoo, name):
    a, b = zoo.make(name, seed=0), zoo.make(name, seed=1)
    batches = [(zoo.inputs(name, batch=16, seed=s), torch.zeros(16)) for s in range(2)]
    spec = permutation_spec(a, batches[0][0])
    graph = traced_copy(a, (batches[0][0],))
    targets = repair_targets(graph, spec)
    assert len(targets) >= 2
    state_a, state_b = a.state_dict(), b.state_dict()
    alpha = 0.3
    repaired = interpolated_state(a, state_a, state_b, alpha, batches, repair="repair", spec=spec)
    ends = [channel_moments(graph, s, batches, targets) for s in (state_a, state_b)]
    got = channel_moments(graph, repaired, batches, targets)
    plain = channel_moments(graph, interpolated_state(a, state_a, state_b, alpha), batches, targets)
    for t in targets:
        for i in (0, 1):  # mean, std
            goal = (1 - alpha) * ends[0][t.node][i] + alpha * ends[1][t.node][i]
            torch.testing.assert_close(got[t.node][i], goal, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(plain[t.node][1], goal)  # plain interpolation misses it


def test_bn_reset_recomputes_running_statistics(zoo):
    a, b = zoo.make("resnet-batch", seed=0), zoo.make("resnet-batch", seed=1)
    x = zoo.inputs("resnet-batch", batch=32)
    state = interpolated_state(a, a.state_dict(), b.state_dict(), 0.5, [x], repair="bn_reset")
    graph = traced_copy(a, (x,))
    graph.load_state_dict(state)
    with torch.no_grad():
        first = graph.stem.conv(x)  # the stem norm's input
    torch.testing.assert_close(state["stem.norm.running_mean"], first.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(state["stem.norm.running_var"], first.var(dim=(0, 2, 3)))
    assert torch.equal(state["stem.conv.weight"], 0.5 * (a.stem.conv.weight + b.stem.conv.weight))


def test_plain_interpolation_and_bad_repair(zoo):
    a, b = zoo.make("mlp", seed=0), zoo.make("mlp", seed=1)
    start = interpolated_state(a, a.state_dict(), b.state_dict(), 0.0)
    assert all(torch.equal(start[k], v) for k, v in a.state_dict().items())
    with pytest.raises(ConfigError, match="repair: got 'renorm'"):
        interpolated_state(a, a.state_dict(), b.state_dict(), 0.5, [], repair="renorm")
    with pytest.raises(ConfigError, match="repair='repair' needs probe batches"):
        interpolated_state(a, a.state_dict(), b.state_dict(), 0.5, None, repair="repair")
