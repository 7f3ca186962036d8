"""A test-only callback that kills its own process with SIGKILL at a given optimizer step."""

import os
import signal

from lightning.pytorch import Callback


class KillAtStep(Callback):
    """SIGKILL the process once ``trainer.global_step`` reaches ``step`` (never if negative)."""

    def __init__(self, step: int = -1) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if 0 <= self.step <= trainer.global_step:
            os.kill(os.getpid(), signal.SIGKILL)
