"""Subspace with BatchNorm: every evaluated point gets statistics recomputed at that point."""

import json
from functools import partial

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from batch_norm_net import BatchNormNet
from quiet_trainer import quiet_trainer
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

import lsuite.model.subspace as subspace_module
from lsuite.errors import ConfigError
from lsuite.model.mlp import MLP
from lsuite.model.subspace import Subspace


class _Data(pl.LightningDataModule):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.train = TensorDataset(torch.randn(48, 5, generator=g), torch.randint(0, 3, (48,)))
        self.val = TensorDataset(torch.randn(20, 5, generator=g), torch.randint(0, 3, (20,)))

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=8)  # not shuffled: known first batches

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=10)


def _fit(tmp_path, net, **kwargs):
    torch.manual_seed(0)
    module = Subspace(net, partial(torch.optim.SGD, lr=0.1), num_classes=3, **kwargs)
    trainer = quiet_trainer(
        tmp_path, max_epochs=1, limit_train_batches=3, accelerator="cpu", num_sanity_val_steps=0
    )
    data = _Data()
    trainer.fit(module, datamodule=data)
    return module, trainer, data


def _hand_statistics(module, weights, data, num_batches):
    """BatchNorm1d's statistics by hand: the mean of the batch means and unbiased variances."""
    params = {k: v.detach() for k, v in module.point(weights).items()}
    means, variances = [], []
    for k, (x, _) in enumerate(data.train_dataloader()):
        if k == num_batches:
            break
        h = x @ params["first.weight"].T + params["first.bias"]
        means.append(h.mean(dim=0))
        variances.append(h.var(dim=0, unbiased=True))
    return torch.stack(means).mean(dim=0), torch.stack(variances).mean(dim=0), len(means)


def test_evaluated_points_get_their_own_statistics(tmp_path):
    module, trainer, data = _fit(tmp_path, BatchNormNet(), bn_batches=2, eval_points=3)
    shared = {k: v.clone() for k, v in module.net.named_buffers()}
    for weights in ([0.5, 0.5], [1.0, 0.0], [0.2, 0.8]):
        buffers = module.batch_norm_at([torch.tensor(weights)])[0]
        mean, var, count = _hand_statistics(module, torch.tensor(weights), data, 2)
        torch.testing.assert_close(buffers["norm.running_mean"], mean)
        torch.testing.assert_close(buffers["norm.running_var"], var)
        assert buffers["norm.num_batches_tracked"].item() == count
    for k, v in module.net.named_buffers():  # the shared statistics are untouched
        assert torch.equal(v, shared[k]), k

    # validation at the midpoint uses the midpoint's statistics
    metrics = trainer.validate(module, datamodule=data, verbose=False)[0]
    mean, var, _ = _hand_statistics(module, torch.tensor([0.5, 0.5]), data, 2)
    midpoint = {k: v.detach() for k, v in module.midpoint().items()}
    state = {**shared, **midpoint, "norm.running_mean": mean, "norm.running_var": var}
    module.net.eval()
    x, y = data.val.tensors
    expected = F.cross_entropy(functional_call(module.net, state, (x,)), y)
    assert metrics["val/loss"] == pytest.approx(expected.item(), rel=1e-5)
    with_shared = F.cross_entropy(functional_call(module.net, midpoint, (x,)), y)
    assert abs(with_shared.item() - expected.item()) > 1e-3  # the recomputation matters here
    assert module._eval_buffers is None  # back to the shared statistics after validation

    # the end-of-fit evaluation along the line, and its record
    record = json.loads((tmp_path / "subspace.json").read_text())
    assert record["batch_norm"] == "recomputed" and record["bn_batches"] == 2
    row = next(r for r in record["points"] if r["point"] == "alpha=0.50")
    assert row["val_loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_networks_without_batch_norm_are_evaluated_as_before(tmp_path, monkeypatch):
    def no_batches(*args, **kwargs):
        raise AssertionError("no training batches are needed without BatchNorm")

    monkeypatch.setattr(subspace_module, "first_training_batches", no_batches)
    net = MLP(input_shape=(5,), num_classes=3, width=8)
    module, trainer, data = _fit(tmp_path, net, eval_points=2)
    metrics = trainer.validate(module, datamodule=data, verbose=False)[0]
    x, y = data.val.tensors
    module.net.eval()
    expected = F.cross_entropy(functional_call(module.net, module.midpoint(), (x,)), y)
    assert metrics["val/loss"] == pytest.approx(expected.item(), rel=1e-5)
    record = json.loads((tmp_path / "subspace.json").read_text())
    assert record["batch_norm"] == "none" and record["bn_batches"] is None


def test_bn_batches_must_be_a_positive_int():
    with pytest.raises(ConfigError, match="bn_batches: got 0"):
        Subspace(BatchNormNet(), partial(torch.optim.SGD, lr=0.1), num_classes=3, bn_batches=0)
