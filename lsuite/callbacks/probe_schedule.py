"""When a scheduled probe can fire, and which weights it measures then."""

from __future__ import annotations

from typing import Literal

from lightning.pytorch import Trainer

from lsuite.callbacks.swa import holds_average
from lsuite.errors import ConfigError

When = Literal["step", "epoch", "fit_end"]


def check_schedule(
    name: str,
    *,
    every_n_epochs: int | None,
    every_n_train_steps: int | None,
    on_fit_end: bool,
    max_epochs: int | None,
    max_steps: int | None,
) -> None:
    """Raise when a schedule can never fire under the trainer's limits.

    A schedule with nothing set is allowed (``measure_now`` only).

    Args:
        name: the probe's name, for the message.
        every_n_epochs: the epoch period, or None.
        every_n_train_steps: the step period, or None.
        on_fit_end: whether the probe measures at the end of fit (then it always fires).
        max_epochs: the trainer's limit (None or -1: none).
        max_steps: the trainer's limit (None or -1: none).

    Raises:
        ConfigError: naming ``<probe>.every_n_epochs`` (or ``every_n_train_steps``).
    """
    if on_fit_end or (every_n_epochs is None and every_n_train_steps is None):
        return
    epochs_fire = every_n_epochs is not None and (
        max_epochs is None or max_epochs < 0 or every_n_epochs <= max_epochs
    )
    steps_fire = every_n_train_steps is not None and (
        max_steps is None or max_steps < 0 or every_n_train_steps <= max_steps
    )
    if epochs_fire or steps_fire:
        return
    key, value = (
        ("every_n_epochs", every_n_epochs)
        if every_n_epochs is not None
        else ("every_n_train_steps", every_n_train_steps)
    )
    raise ConfigError(
        f"{name}.{key}: got {value}; the run stops after max_epochs={max_epochs}, "
        f"max_steps={max_steps}, so the probe never runs; expected a smaller value or "
        "on_fit_end=true"
    )


def weights_label(trainer: Trainer, when: When) -> str:
    """Say which weights are measured: ``swa_average`` once weight averaging loaded its average."""
    fit_ended = when == "fit_end"
    if any(holds_average(c, trainer, fit_ended=fit_ended) for c in trainer.callbacks):
        return "swa_average"
    return "current"
