"""The project's own model: dict batches, label smoothing, its own logging."""

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn


class SignalNet(L.LightningModule):
    def __init__(self, hidden: int = 16, lr: float = 0.05, label_smoothing: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Linear(8, hidden),
            nn.BatchNorm1d(hidden),
            nn.Tanh(),
            nn.Dropout(0.1),
            nn.Linear(hidden, 3),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

    def training_step(self, batch: dict, batch_idx: int) -> dict:
        logits = self(batch["features"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.label_smoothing)
        self.log("fit_loss", loss, prog_bar=True)
        return {"loss": loss, "logits": logits.detach()}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch["features"])
        accuracy = (logits.argmax(1) == batch["label"]).float().mean()
        self.log("accuracy", accuracy)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
