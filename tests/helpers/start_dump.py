"""A test-only callback that saves a run's starting weights, first batch and validation set."""

from pathlib import Path

import torch
from lightning.pytorch import Callback


class StartDump(Callback):
    """Save ``start.pt`` (weights at fit start), ``first_batch.pt``, ``train.pt``, ``val.pt``."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def on_train_start(self, trainer, pl_module) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.directory / "start.pt")
        for split in ("train", "val"):
            tensors = getattr(trainer.datamodule, f"{split}_dataset").tensors
            torch.save([t.clone() for t in tensors], self.directory / f"{split}.pt")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 0 and batch_idx == 0:
            torch.save([t.detach().cpu().clone() for t in batch], self.directory / "first_batch.pt")
