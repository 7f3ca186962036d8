"""The README fragment "In your own Lightning project", run as written on a network of its own.

CurveModule, Subspace and RandomSubspace around a user-defined ``nn.Module`` (with BatchNorm)
and plain DataLoaders, no lsuite config, datamodule or model; a few steps of a plain Trainer.
"""

import functools
import json

import torch
from lightning.pytorch import Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lsuite import CurveModule, RandomSubspace, Subspace
from lsuite.callbacks import ProbeCallback
from lsuite.probes.curve import Curve


class MyNet(nn.Module):
    """The user's own network: not from lsuite.model."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.body(x))


def _loaders():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(96, 20, generator=generator)
    targets = (inputs[:, :3]).argmax(dim=1)
    data = TensorDataset(inputs, targets)
    return DataLoader(data, batch_size=32, shuffle=True), DataLoader(data, batch_size=48)


def _trainer(tmp_path, **kwargs):
    return Trainer(
        max_steps=4,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_modules_train_a_network_of_the_users_own_project(tmp_path):
    train_loader, val_loader = _loaders()
    sgd = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)

    # a line of networks trained from scratch
    line = Subspace(MyNet(), sgd, num_classes=3, num_vertices=2, beta=1.0)
    _trainer(tmp_path).fit(line, train_loader, val_loader)
    midpoint = line.probe_network()
    assert isinstance(midpoint, MyNet)
    assert len(line.evaluation) == line.eval_points  # validation loss along the line

    # w = w0 + P z, only z trained
    low = RandomSubspace(MyNet(), sgd, num_classes=3, dim=50, projection="fastfood")
    _trainer(tmp_path).fit(low, train_loader, val_loader)
    assert [n for n, p in low.named_parameters() if p.requires_grad] == ["z"]
    assert low.z.detach().abs().sum() > 0

    # a Bezier curve between two trained networks of the project, saved as state dicts
    net_a, net_b = line.probe_network(), low.probe_network()
    torch.save(net_a.state_dict(), tmp_path / "a.pt")
    torch.save(net_b.state_dict(), tmp_path / "b.pt")
    curve = CurveModule(
        MyNet(), sgd, num_classes=3, start=str(tmp_path / "a.pt"), end=str(tmp_path / "b.pt")
    )
    probe = ProbeCallback(Curve(num_points=5), plots=False)
    trainer = _trainer(tmp_path, callbacks=[probe], enable_progress_bar=False)
    trainer.fit(curve, train_loader, val_loader)
    (result,) = trainer.test(curve, val_loader, verbose=False)
    assert {"test/loss_max", "test/line_loss_max", "test/error_max"} <= set(result)
    assert all(torch.isfinite(torch.tensor(v)) for v in result.values())
    records = (tmp_path / "probes" / "curve.jsonl").read_text().splitlines()  # default_root_dir
    assert records and json.loads(records[-1])["result"]["kind"] == "bezier"
    # the ends stay the two saved networks
    ends = curve.points()[[0, -1]]
    flat = [torch.cat([p.flatten() for p in n.parameters()]) for n in (net_a, net_b)]
    torch.testing.assert_close(ends, torch.stack(flat))
