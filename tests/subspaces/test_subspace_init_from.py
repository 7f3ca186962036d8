"""init_from= one network's weights: a subspace's vertex 0, a random subspace's w0."""

import copy
import os
import sys
from functools import partial

import pytest
import torch
from batch_norm_net import BatchNormNet
from timed_run import run_timed

from lsuite.config.init_from import load_initial_weights
from lsuite.errors import ConfigError
from lsuite.model.classifier import Classifier
from lsuite.model.mlp import MLP
from lsuite.model.random_subspace import RandomSubspace
from lsuite.model.subspace import Subspace

SGD = partial(torch.optim.SGD, lr=0.1)


def _trained_network():
    torch.manual_seed(7)
    net = BatchNormNet()
    with torch.no_grad():
        net.norm.running_mean.add_(0.5)
        net.norm.num_batches_tracked.fill_(3)
    return net


@pytest.mark.parametrize("kind", ["state dict", "classifier checkpoint"])
def test_subspace_vertex_zero_takes_the_weights_the_others_keep_their_draws(tmp_path, kind):
    source = _trained_network()
    path = tmp_path / "w.pt"
    if kind == "state dict":
        torch.save(source.state_dict(), path)
    else:
        classifier = Classifier(copy.deepcopy(source), SGD, num_classes=3)
        torch.save({"state_dict": classifier.state_dict(), "global_step": 5}, path)
    torch.manual_seed(0)
    module = Subspace(BatchNormNet(), SGD, num_classes=3, num_vertices=3)
    before = {n: v.clone() for n, v in module.stacked().items()}
    into = load_initial_weights(module, path)
    assert "vertex 0" in into and "independent" in into
    stacked = module.stacked()
    for name, value in source.named_parameters():
        assert torch.equal(stacked[name][0], value.detach()), name
        for k in (1, 2):
            assert torch.equal(stacked[name][k], before[name][k]), (name, k)
    for name, value in source.named_buffers():
        assert torch.equal(module.net.get_buffer(name), value), name


def test_a_subspace_checkpoint_still_loads_every_vertex(tmp_path):
    torch.manual_seed(1)
    source = Subspace(BatchNormNet(), SGD, num_classes=3)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "s.ckpt")
    torch.manual_seed(2)
    target = Subspace(BatchNormNet(), SGD, num_classes=3)
    assert load_initial_weights(target, tmp_path / "s.ckpt") is None
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_a_network_of_another_architecture_names_the_key(tmp_path):
    torch.save(MLP(input_shape=(5,), num_classes=3, width=4).state_dict(), tmp_path / "o.pt")
    module = Subspace(BatchNormNet(), SGD, num_classes=3)
    with pytest.raises(ConfigError, match=r"^init_from: .*o\.pt.* no entry for the model's"):
        load_initial_weights(module, tmp_path / "o.pt")


def test_random_subspace_takes_the_weights_as_w0(tmp_path):
    source = _trained_network()
    torch.save(source.state_dict(), tmp_path / "w.pt")
    module = RandomSubspace(BatchNormNet(), SGD, num_classes=3, dim=4)
    into = load_initial_weights(module, tmp_path / "w.pt")
    assert "w0" in into
    assert not module.z.any()
    point = module.point()
    for name, value in source.named_parameters():
        torch.testing.assert_close(point[name], value.detach(), rtol=0, atol=0)
    for name, value in source.named_buffers():
        assert torch.equal(module.net.get_buffer(name), value), name


@pytest.mark.slow
def test_init_from_through_lsuite_train(tmp_path):
    """Two steps at lr 1e-12: vertex 0 is the file's network, vertex 1 is not; the log says so."""
    torch.manual_seed(5)
    net = MLP(input_shape=(1, 8, 8), num_classes=10, width=16, depth=1)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    run_dir = tmp_path / "run"
    args = [
        "module=subspace", f"init_from={tmp_path / 'net.pt'}", "trainer.max_epochs=1",
        "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false",
        "model.width=16", "model.depth=1", "optim.lr=1e-12", "logger=[csv]",
        "module.eval_points=2", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    result = run_timed(
        [sys.executable, "-m", "lsuite.train", *args],
        cwd=tmp_path,
        env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert "init_from: network weights from" in log and "vertex 0" in log
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    weights, others = state["weight_vertices"], state["other_vertices"]
    flat = [v.reshape(-1) for n, v in net.state_dict().items()]
    expected_weights = torch.cat([flat[0], flat[2]])  # hidden.0.weight, head.weight
    expected_others = torch.cat([flat[1], flat[3]])  # hidden.0.bias, head.bias
    torch.testing.assert_close(weights[0], expected_weights, rtol=0, atol=1e-9)
    torch.testing.assert_close(others[0], expected_others, rtol=0, atol=1e-9)
    assert (weights[1] - expected_weights).abs().max() > 0.01  # its own draw
