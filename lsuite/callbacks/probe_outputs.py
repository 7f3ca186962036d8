"""Tell a ProbeCallback's session where a Trainer's records go and how its ranks talk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from torch import Tensor

from lsuite.probes.progress import Listener
from lsuite.session import Outputs, Sync


def records_root(trainer: Trainer, output_dir: str | Path | None) -> Path:
    """Return the directory that holds ``probes/`` and ``plots/`` for this run.

    ``output_dir`` wins; else the logger's run directory (``trainer.log_dir``, e.g.
    ``lightning_logs/version_N``: next to Lightning's metrics, so each run's records are its own);
    else ``trainer.default_root_dir``. Call it on every rank: ``trainer.log_dir`` broadcasts.

    Args:
        trainer: the trainer being set up.
        output_dir: the callback's ``output_dir`` argument.

    Returns:
        The directory.
    """
    if output_dir is not None:
        return Path(output_dir)
    if trainer.loggers:
        log_dir = trainer.log_dir
        if log_dir is not None:
            return Path(log_dir)
    return Path(trainer.default_root_dir)


def trainer_outputs(trainer: Trainer, root: Path, *, plots: bool) -> Outputs:
    """Return the session outputs of a trainer: ``root`` and every logger."""
    return Outputs(directory=root, loggers=tuple(trainer.loggers), plots=plots)


def trainer_sync(trainer: Trainer) -> Sync:
    """Return the session's view of the trainer's processes (all-reduce and barrier)."""
    if trainer.world_size == 1:
        return Sync()

    def reduce_sum(tensor: Tensor) -> Tensor:
        return trainer.strategy.reduce(tensor, reduce_op="sum")

    def barrier() -> None:
        trainer.strategy.barrier("lsuite_probe_publish")

    return Sync(
        rank=trainer.global_rank,
        world_size=trainer.world_size,
        reduce_sum=reduce_sum,
        barrier=barrier,
    )


def progress_enabled(trainer: Trainer) -> bool:
    """Return whether the trainer shows a progress bar (probes then show their progress)."""
    bar = trainer.progress_bar_callback
    return bool(bar is not None and bar.is_enabled and trainer.is_global_zero)


def progress_target(trainer: Trainer, name: str) -> bool | Listener:
    """Return where a probe's progress goes: the training bar, a line of its own, or off.

    While training with Lightning's bar open (per-step and per-epoch measurements), the probe's
    ``done/total unit`` goes into that bar (the end of tqdm's line, or a task of the rich bar), so
    the two never fight over the terminal; otherwise (fit end) the session draws its own line.

    Args:
        trainer: the running trainer.
        name: the probe's name.

    Returns:
        A progress listener writing into the bar, True for the session's own line, or False.
    """
    if not progress_enabled(trainer):
        return False
    bar = trainer.progress_bar_callback
    if trainer.training and isinstance(bar, TQDMProgressBar):
        line = getattr(bar, "_train_progress_bar", None)
        if line is not None and not getattr(line, "disable", True):
            return _BarListener(name, lambda text: line.set_postfix_str(text))
    if trainer.training and isinstance(bar, RichProgressBar) and bar.progress is not None:
        return _RichTaskListener(name, bar.progress)
    return True


class _BarListener:
    """Progress listener that shows ``probe <name> done/total unit`` through ``show(text)``."""

    def __init__(self, name: str, show: Callable[[str], object]) -> None:
        self.name = name
        self.show = show
        self.done = 0
        self.total: int | None = None
        self.unit = "steps"

    def __call__(self, event: str, value: int | None, unit: str | None) -> None:
        if event == "total":
            self.done, self.total, self.unit = 0, value, unit or self.unit
        elif value is not None:
            self.done += value
        total = "" if self.total is None else f"/{self.total}"
        self.show(f"probe {self.name} {self.done}{total} {self.unit}")

    def close(self) -> None:
        """Leave the bar as it was (tqdm's postfix is rewritten at the next step)."""


class _RichTaskListener(_BarListener):
    """Progress listener that adds a task to Lightning's rich progress display while it runs."""

    def __init__(self, name: str, progress: Any) -> None:
        super().__init__(name, self._update)
        self.progress = progress
        self.task: Any = None

    def _update(self, text: str) -> None:
        if self.task is None:
            self.task = self.progress.add_task(text, total=self.total)
        self.progress.update(self.task, description=text, completed=self.done, total=self.total)

    def close(self) -> None:
        """Remove the probe's task from the display."""
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
