"""A model without ``forward``, as in Lightning's examples/pytorch/basics/transformer.py."""

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn


class NoForwardNet(L.LightningModule):
    """Calls ``self.model(...)`` in its steps and defines no ``forward`` of its own."""

    def __init__(self, hidden: int = 16, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = nn.Sequential(nn.Linear(8, hidden), nn.Tanh(), nn.Linear(hidden, 3))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return F.cross_entropy(self.model(batch["features"]), batch["label"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self.model(batch["features"])
        self.log("accuracy", (logits.argmax(1) == batch["label"]).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
