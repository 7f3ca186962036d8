"""A tiny classification run and a simple probe for callback tests."""

from dataclasses import dataclass
from functools import partial

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset

from lsuite.model.classifier import Classifier
from lsuite.probes.base import Probe, ProbeResult


@dataclass(frozen=True)
class LossResult(ProbeResult):
    loss: float
    draw: float
    num_samples: int


class LossProbe(Probe):
    """Mean loss over the probe data plus one random draw (to check the generator is used)."""

    def __init__(self, name=None):
        super().__init__(name)
        self.observed_steps = []

    def run(self, point, data, *, generator, **anchors):
        source = next(iter(data.values()))
        loss = source.mean(lambda x, y: point.loss(x, y).detach().double())
        draw = torch.rand((), generator=generator).item()
        return LossResult(loss=float(loss), draw=draw, num_samples=source.num_samples)

    def observe(self, params, *, step, epoch):
        self.observed_steps.append(step)

    def state_dict(self):
        return {"observed_steps": list(self.observed_steps)}

    def load_state_dict(self, state):
        self.observed_steps = list(state["observed_steps"])


class TinyData(LightningDataModule):
    input_shape = (6,)
    num_classes = 3

    def __init__(self, n=96, batch_size=16):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 6, generator=g)
        self.y = (self.x[:, 0] > 0).long() + (self.x[:, 1] > 0.5).long()
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(TensorDataset(self.x[:32], self.y[:32]), batch_size=self.batch_size)


def tiny_module(seed=0, bn=False, lr=None):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(6, 16)]
    if bn:
        layers.append(torch.nn.BatchNorm1d(16))
    layers += [torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(16, 3)]
    net = torch.nn.Sequential(*layers)
    return Classifier(
        net,
        optimizer=partial(torch.optim.SGD, lr=0.1 if lr is None else lr, momentum=0.9),
        num_classes=3,
    )
