"""Tell a ProbeCallback's session where a Trainer's records go and how its ranks talk."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Trainer
from torch import Tensor

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
