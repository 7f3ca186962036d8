"""Stop training with a clear error as soon as the training loss is NaN or infinite."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor
from typing_extensions import override


class TrainingDiverged(RuntimeError):
    """Training stopped because its loss became NaN or infinite.

    Args:
        message: what happened, where.
        step: the trainer's global step when it was found.
        value: the loss value on this rank (``nan``, ``inf`` or ``-inf``; ``nan`` when only
            another rank's loss was not finite).
    """

    def __init__(self, message: str, *, step: int, value: float) -> None:
        super().__init__(message)
        self.step = step
        self.value = value


class DivergenceCheck(Callback):
    """Raise `TrainingDiverged` after the first training step whose loss is not finite.

    The loss checked is the one ``training_step`` returns (a tensor or the ``"loss"`` entry of a
    dict); with manual optimisation, where it returns none, the logged metric ``monitor`` is
    checked instead. Under DDP the decision is reduced over ranks, so every rank stops at the same
    step. ``lsuite-train`` records the job as ``diverged`` in ``<run_dir>/status.json``.

    Args:
        monitor: logged metric to check when ``training_step`` returns no loss.
    """

    def __init__(self, monitor: str = "train/loss") -> None:
        self.monitor = monitor

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Check the step's loss and raise on every rank when any rank's loss is not finite.

        Raises:
            TrainingDiverged: when the loss is NaN or infinite.
        """
        del pl_module, batch
        loss = _returned_loss(outputs)
        if loss is None:
            loss = trainer.callback_metrics.get(self.monitor)
        finite = loss is None or bool(torch.isfinite(loss.detach()).all())
        if not trainer.strategy.reduce_boolean_decision(not finite, all=False):
            return
        what = "training_step's loss" if _returned_loss(outputs) is not None else self.monitor
        value = float("nan")
        found = "not finite on another rank"
        if not finite and loss is not None:
            value = float(loss.detach().float().flatten()[0])
            found = f"{value}"
        raise TrainingDiverged(
            f"training diverged: {what} is {found} at global step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}, batch {batch_idx}); lower the learning rate, "
            "add gradient clipping (trainer.gradient_clip_val) or warm up",
            step=trainer.global_step,
            value=value,
        )


def _returned_loss(outputs: Any) -> Tensor | None:
    """Return the loss ``training_step`` returned (Lightning passes ``{"loss": ...}``), if any."""
    if isinstance(outputs, Tensor):
        return outputs
    if isinstance(outputs, dict) and isinstance(outputs.get("loss"), Tensor):
        return outputs["loss"]
    return None
