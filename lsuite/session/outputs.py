"""Publish one record from rank zero: the JSON line, logger scalars, curves and plots; then sync."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsuite.results.curves import curve_table
from lsuite.results.jsonl import append_record
from lsuite.session.sync import Sync

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outputs:
    """Where a measurement's record, scalars and plots go.

    Attributes:
        directory: records go to ``directory/probes/<name>.jsonl``, plots to ``directory/plots/``.
        loggers: Lightning loggers; scalars are logged as ``probe/<name>/<field>`` at
            ``meta["step"]``.
        plots: render the plots of records that have one.
    """

    directory: Path
    loggers: Sequence[Any] = ()
    plots: bool = True

    def records_path(self, name: str) -> Path:
        """Return the JSON-lines file of the probe called ``name``."""
        return Path(self.directory) / "probes" / f"{name}.jsonl"


def publish(
    outputs: Outputs,
    record: dict[str, Any],
    scalars: Mapping[str, float],
    *,
    sync: Sync,
) -> None:
    """Write ``record``, log ``scalars`` and render plots on rank zero; then wait for every rank.

    A plot or curve that cannot be drawn is a warning, never an error: the record is written
    first and `scripts/replot.py` rebuilds plots from it.

    Args:
        outputs: destinations.
        record: the JSON-safe record (``record["meta"]`` names the probe and the step).
        scalars: flat ``field -> value``; logged as ``probe/<name>/<field>``.
        sync: the ranks; only rank zero writes.
    """
    if sync.is_zero:
        meta = record["meta"]
        name, step = meta["probe"], int(meta["step"])
        append_record(outputs.records_path(name), record)
        metrics = {f"probe/{name}/{key}": float(value) for key, value in scalars.items()}
        for logger in outputs.loggers:
            logger.log_metrics(metrics, step=step)
        if record.get("result") is not None:
            try:
                _log_curves(outputs.loggers, record, name, step)
                if outputs.plots:
                    _plot(outputs, record, name, step)
            except Exception as error:  # plots are rebuildable, records are not
                log.warning("probe %s: could not draw its plot or curve: %r", name, error)
    sync.wait()


def _plot(outputs: Outputs, record: dict[str, Any], name: str, step: int) -> None:
    from lsuite.plots.render import render  # matplotlib is imported only when plotting

    paths = render(record, Path(outputs.directory) / "plots")
    if not paths:
        return
    for logger in _wandb_loggers(outputs.loggers):
        logger.log_image(key=f"probe/{name}/plot", images=[str(p) for p in paths], step=step)


def _log_curves(loggers: Sequence[Any], record: dict[str, Any], name: str, step: int) -> None:
    """Log an interpolation, line or spectrum record to wandb as a table with a line plot."""
    wandb_loggers = _wandb_loggers(loggers)
    table = curve_table(record) if wandb_loggers else None
    if table is None:
        return
    import wandb

    for logger in wandb_loggers:
        data = wandb.Table(columns=table.columns, data=table.rows)
        chart = wandb.plot.line(data, table.x, table.y, stroke=table.series, title=table.title)
        # WandbLogger's x axis is trainer/global_step; wandb's own step is left to wandb.
        logger.experiment.log({f"probe/{name}/curve": chart, "trainer/global_step": step})


def _wandb_loggers(loggers: Sequence[Any]) -> list[Any]:
    """Return the wandb loggers (``lightning`` or ``pytorch_lightning`` ones) among ``loggers``."""
    return [
        logger
        for logger in loggers
        if any(cls.__name__ == "WandbLogger" for cls in type(logger).__mro__)
    ]
