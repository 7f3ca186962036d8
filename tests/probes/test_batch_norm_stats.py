import copy

import pytest
import torch
import torch.nn.functional as F
from landscape_cases import batches_for, cnn_bn, mlp, named, one_thread  # noqa: F401
from torch.optim.swa_utils import update_bn

from lsuite.errors import ConfigError
from lsuite.probes.batch_norm_stats import BatchNormRecompute, batch_norm_statistics
from lsuite.probes.data_source import DataSource
from lsuite.probes.point import snapshot


def test_recompute_batch_norm_matches_update_bn():
    model = cnn_bn()
    batches = batches_for(model)
    point = snapshot(model, F.cross_entropy)
    params = {k: v * 1.1 for k, v in point.params.items()}
    modes = [(m.training, getattr(m, "momentum", None)) for m in point.skeleton.modules()]
    buffers = BatchNormRecompute(point, DataSource(batches), num_batches=2)(params)
    assert modes == [(m.training, getattr(m, "momentum", None)) for m in point.skeleton.modules()]
    reference = copy.deepcopy(model)
    state = reference.state_dict()
    state.update(params)
    reference.load_state_dict(state)
    update_bn([x for x, _ in batches[:2]], reference)
    for key, value in reference.named_buffers():
        torch.testing.assert_close(buffers[key], value, atol=1e-6, rtol=1e-6)
    assert not torch.equal(buffers["1.running_mean"], point.buffers["1.running_mean"])
    with pytest.raises(ConfigError, match="bn_recompute_batches"):
        BatchNormRecompute(snapshot(mlp(), F.cross_entropy), DataSource(batches), 1)


def test_batch_norm_statistics_labels():
    assert batch_norm_statistics(snapshot(mlp(), F.cross_entropy), False) == "none"
    assert batch_norm_statistics(snapshot(cnn_bn(), F.cross_entropy), False) == "point"
    assert batch_norm_statistics(snapshot(cnn_bn(), F.cross_entropy), True) == "recomputed"
