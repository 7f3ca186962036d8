"""Publish one probe record: the JSON line, logger scalars and plots, from global rank zero."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer

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
        if plots:
            _plot(trainer, path.parent.parent / "plots", record)
    trainer.strategy.barrier("lsuite_probe_publish")


def _plot(trainer: Trainer, directory: Path, record: dict[str, Any]) -> None:
    from lsuite.plots.render import render  # matplotlib is imported only when plotting

    paths = render(record, directory)
    if not paths:
        return
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            key = f"probe/{record['probe']}/plot"
            logger.log_image(key=key, images=[str(p) for p in paths], step=trainer.global_step)
