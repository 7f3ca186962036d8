"""Publish one probe record: the JSON line, logger scalars and plots, from global rank zero."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer

from lsuite.results.curves import curve_table
from lsuite.results.jsonl import append_record

log = logging.getLogger(__name__)


def publish(
    trainer: Trainer, path: Path, record: dict[str, Any], scalars: dict[str, float], *, plots: bool
) -> None:
    """Write ``record`` to ``path``, log ``scalars`` to every logger and render plots, then sync.

    Only global rank zero writes or logs; every rank waits at the barrier afterwards.

    Args:
        trainer: the running trainer.
        path: the probe's ``.jsonl`` file.
        record: the JSON-safe record (probe name, step, epoch, values).
        scalars: flat ``field -> value``; logged as ``probe/<name>/<field>``.
        plots: whether to render the record's plots into ``<run_dir>/plots/``.
    """
    if trainer.is_global_zero:
        append_record(path, record)
        name = record["probe"]
        metrics = {f"probe/{name}/{key}": value for key, value in scalars.items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        _log_curves(trainer, record)
        if plots:
            _plot(trainer, path.parent.parent / "plots", record)
    trainer.strategy.barrier("lsuite_probe_publish")


def _plot(trainer: Trainer, directory: Path, record: dict[str, Any]) -> None:
    from lsuite.plots.render import render  # matplotlib is imported only when plotting

    paths = render(record, directory)
    if not paths:
        return
    for logger in _wandb_loggers(trainer):
        key = f"probe/{record['probe']}/plot"
        logger.log_image(key=key, images=[str(p) for p in paths], step=trainer.global_step)


def _log_curves(trainer: Trainer, record: dict[str, Any]) -> None:
    """Log an interpolation, line or spectrum record to wandb as a table with a line plot."""
    loggers = _wandb_loggers(trainer)
    table = curve_table(record) if loggers else None
    if table is None:
        return
    import wandb

    for logger in loggers:
        data = wandb.Table(columns=table.columns, data=table.rows)
        chart = wandb.plot.line(data, table.x, table.y, stroke=table.series, title=table.title)
        # WandbLogger's x axis is trainer/global_step; wandb's own step is left to wandb.
        key = f"probe/{record['probe']}/curve"
        logger.experiment.log({key: chart, "trainer/global_step": trainer.global_step})


def _wandb_loggers(trainer: Trainer) -> list[Any]:
    """Return the trainer's wandb loggers (``lightning`` or ``pytorch_lightning`` ones)."""
    return [
        logger
        for logger in trainer.loggers
        if any(cls.__name__ == "WandbLogger" for cls in type(logger).__mro__)
    ]
