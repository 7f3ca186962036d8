"""Test-only modules whose loss turns NaN at a chosen step (on one rank, or on all)."""

from functools import partial

import torch

from lsuite.model.classifier import Classifier


class PoisonedModule(Classifier):
    """Returns a NaN loss from global step ``poison_step`` on (only on ``poison_rank`` if set)."""

    def __init__(self, poison_step=3, poison_rank=None):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        super().__init__(net, optimizer=partial(torch.optim.SGD, lr=0.1), num_classes=3)
        self.poison_step = poison_step
        self.poison_rank = poison_rank

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        hit = self.trainer.global_step >= self.poison_step
        if hit and self.poison_rank in (None, self.global_rank):
            return loss * float("nan")
        return loss


class ManualModule(PoisonedModule):
    """Manual optimisation: training_step returns nothing (the Classifier logs ``train/loss``)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        loss = PoisonedModule.training_step(self, batch, batch_idx)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
