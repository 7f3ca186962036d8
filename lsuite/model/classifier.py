"""A LightningModule that trains any network by cross-entropy with an explicit L2 term."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics.classification import MulticlassAccuracy

from lsuite.errors import require
from lsuite.optim.closure_optimizer import ClosureOptimizer

OptimizerFactory = Callable[..., Optimizer]
"""``factory(params) -> Optimizer``, e.g. a Hydra partial of ``torch.optim.SGD``."""
SchedulerFactory = Callable[..., LRScheduler]
"""``factory(optimizer, total_steps=...) -> LRScheduler``, stepped after every optimizer step."""


class Classifier(LightningModule):
    """Train ``net`` on ``(inputs, targets)`` batches by cross-entropy, plus ``0.5 * l2 * ||w||^2``.

    The L2 term (`l2_penalty`, called when ``l2 > 0``) is part of the loss that is
    differentiated, so it differs from an optimizer's ``weight_decay`` for adaptive methods such
    as Adam. Logged: ``train/loss`` (cross-entropy, without the L2 term), ``train/objective``
    (with it), ``train/acc``, ``val/loss``, ``val/acc``, ``test/loss``, ``test/acc``.

    This is the ``classifier`` option of the ``module`` config group (``conf/module/``);
    ``lsuite-train`` calls a module's target with ``net``, ``optimizer``, ``num_classes``,
    ``scheduler`` and ``l2``, so another module (e.g. one that trains a curve or a subspace of
    networks) takes the same arguments. Such a module may define an optional method
    ``probe_network(self) -> nn.Module``: the probes then measure the module it returns (the
    network at the point to measure); without it, as here, they measure the LightningModule
    itself.

    Args:
        net: maps ``(B, *input_shape)`` inputs to ``(B, num_classes)`` logits.
        optimizer: optimizer factory called with the parameters.
        num_classes: number of classes ``C``.
        scheduler: learning-rate scheduler factory, or None for a constant rate.
        l2: coefficient of ``0.5 * ||w||^2`` over all trainable parameters (>= 0).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        l2: float = 0.0,
    ) -> None:
        super().__init__()
        require(l2 >= 0, "l2", l2, "a float >= 0")
        require(num_classes >= 2, "num_classes", num_classes, "an int >= 2")
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.l2 = float(l2)
        self.num_classes = num_classes
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])

    def forward(self, inputs: Tensor) -> Tensor:
        """Return ``(B, C)`` logits."""
        return self.net(inputs)

    def l2_penalty(self) -> Tensor:
        """Return ``0.5 * l2 * ||w||^2`` over the trainable parameters (0 when ``l2 == 0``)."""
        if self.l2 == 0:
            return torch.zeros((), device=self.device)
        squares = [p.pow(2).sum() for p in self.parameters() if p.requires_grad]
        return 0.5 * self.l2 * torch.stack(squares).sum()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Return the training objective of one batch and log its loss and accuracy."""
        del batch_idx
        inputs, targets = batch[0], batch[1]
        logits = self(inputs)
        loss = F.cross_entropy(logits, targets)
        # without an L2 term the objective is the loss itself (not loss + 0: two operations and
        # an autograd node per step, a few percent of a small network's step on a CPU)
        objective = loss + self.l2_penalty() if self.l2 > 0 else loss
        if self.should_log_training_step():
            # update, not forward: train/acc is logged per epoch, and forward's per-batch value
            # (a second state update and compute) costs more than an MLP's step on a CPU
            self.train_acc.update(logits.detach(), targets)
            # Per-rank values: averaged over ranks under DDP (the same on every rank, so the
            # all-reduce is issued in the same order everywhere).
            sync = {"on_step": True, "on_epoch": True, "sync_dist": True}
            self.log("train/loss", loss.detach(), prog_bar=True, **sync)
            self.log("train/objective", objective.detach(), **sync)
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return objective

    def should_log_training_step(self) -> bool:
        """Whether this ``training_step`` call logs metrics (not SAM's or Entropy-SGD's reruns)."""
        optimizer = (
            self.trainer.optimizers[0] if self._trainer and self.trainer.optimizers else None
        )
        return not getattr(optimizer, "in_second_pass", False)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Log the validation loss and accuracy."""
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """Log the test loss and accuracy."""
        self._evaluate(batch, "test", self.test_acc)

    def _evaluate(self, batch: Any, stage: str, metric: MulticlassAccuracy) -> None:
        inputs, targets = batch[0], batch[1]
        logits = self(inputs)
        metric(logits, targets)
        loss = F.cross_entropy(logits, targets)
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", sync_dist=True)
        self.log(f"{stage}/acc", metric, on_epoch=True, prog_bar=stage == "val")

    def configure_optimizers(self) -> Any:
        """Build the optimizer and, when configured, a per-step learning-rate scheduler.

        A closure optimizer (`lsuite.optim.closure_optimizer.ClosureOptimizer`: `SAM`,
        `EntropySGD`) is connected to this module: SAM's second pass and Entropy-SGD's Langevin
        steps after the first leave BatchNorm statistics as the first pass set them, and under
        DDP SAM's first backward skips the all-reduce when ``perturbation="local"`` (through the
        strategy's ``block_backward_sync``).

        Returns:
            The optimizer, or a dict with the optimizer and its step-interval scheduler.
        """
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if isinstance(optimizer, ClosureOptimizer):
            strategy = self._trainer.strategy if self._trainer is not None else None
            optimizer.connect(self, no_sync=getattr(strategy, "block_backward_sync", None))
        if self.scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
