"""A test-only callback that saves each rank's final weights, to compare ranks after DDP."""

from pathlib import Path

import torch
from lightning.pytorch import Callback


class RankWeightsDump(Callback):
    """Save the module's ``state_dict()`` on every rank to ``<directory>/rank<r>.pt``."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.directory / f"rank{trainer.global_rank}.pt")
