"""A test-only callback that kills its own process with SIGKILL at a given optimizer step."""

import os
import signal

from lightning.pytorch import Callback


class KillAtStep(Callback):
    """SIGKILL the process once ``trainer.global_step`` reaches ``step`` (never if negative).

    With ``epoch_end``, the kill comes at the end of the training epoch instead (after the
    epoch's checkpoint, before the probes' epoch-end measurements).
    """

    def __init__(self, step: int = -1, epoch_end: bool = False) -> None:
        self.step = step
        self.epoch_end = epoch_end

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.epoch_end:
            self._maybe_kill(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.epoch_end:
            self._maybe_kill(trainer)

    def _maybe_kill(self, trainer) -> None:
        if 0 <= self.step <= trainer.global_step:
            os.kill(os.getpid(), signal.SIGKILL)
