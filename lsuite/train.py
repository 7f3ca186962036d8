"""The ``lsuite-train`` command: a Hydra app that trains the composed model, data and probes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from lsuite.callbacks.probe_callback import ProbeCallback
from lsuite.callbacks.swa import holds_average
from lsuite.config import seeds
from lsuite.config.build import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_module,
    build_trainer,
)
from lsuite.config.cli_check import check_command_line
from lsuite.config.console import quiet_known_noise, route_lightning_logs
from lsuite.config.init_from import apply_init_from
from lsuite.config.job_status import run_job
from lsuite.config.loggers import continue_wandb_runs
from lsuite.config.paths import config_dir
from lsuite.config.resume import resume_checkpoint, with_implied_run_dir
from lsuite.config.sweep import name_run, name_sweep, register_resolvers
from lsuite.config.validate import validate
from lsuite.errors import ConfigError
from lsuite.results.jsonl import write_atomic

log = logging.getLogger("lsuite")


def train(cfg: DictConfig) -> dict[str, float]:
    """Build everything from ``cfg``, fit, test, and report where the results went.

    Args:
        cfg: the composed config (``conf/train.yaml`` and its groups).

    Returns:
        The final metrics (``test/acc``, ``val/acc``, ...) as floats.
    """
    validate(cfg)
    seeds.seed_weights(cfg)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    apply_init_from(cfg, module)
    seeds.seed_data(cfg)
    loggers = build_loggers(cfg)
    callbacks = build_callbacks(cfg, with_loggers=bool(loggers))
    trainer = build_trainer(cfg, callbacks, loggers)
    run_dir = Path(cfg.run_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if trainer.is_global_zero:
        write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    checkpoint = resume_checkpoint(cfg, trainer)
    if checkpoint is not None:
        continue_wandb_runs(loggers)  # one wandb run, not a new one per resume
    for logger in loggers:
        logger.log_hyperparams(resolved)
    with _interruptible(trainer):
        trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)
        if cfg.test:
            trainer.test(module, datamodule=datamodule, ckpt_path=_test_checkpoint(trainer))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.is_global_zero:
        log.info(summary(trainer, run_dir, metrics))  # the console and <run_dir>/train.log
    _finish_wandb(loggers)
    return metrics


@contextmanager
def _interruptible(trainer: Trainer) -> Iterator[None]:
    """Turn Lightning's exit after Ctrl-C back into `KeyboardInterrupt`, for the job status.

    Lightning catches `KeyboardInterrupt` in ``fit``/``test``, shuts down and calls
    ``sys.exit(1)``; the trainer is then marked interrupted.

    Raises:
        KeyboardInterrupt: when Lightning exited because of Ctrl-C.
        SystemExit: any other exit, as it was.
    """
    try:
        yield
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


def _test_checkpoint(trainer: Trainer) -> str | None:
    """Return the best checkpoint's path when there is one, else None (test the final weights).

    The best is the first checkpoint callback's (``callbacks.model_checkpoint``); its path is
    passed rather than ``"best"``, which Lightning resolves the same way but with a warning
    whenever the run has several checkpoint callbacks (``callbacks.last_checkpoint``). Averaged
    weights (SWA) are never in a checkpoint taken during training, so runs that end with them are
    tested on the final weights.
    """
    if any(holds_average(c, trainer, fit_ended=True) for c in trainer.callbacks):
        return None
    checkpoint = trainer.checkpoint_callback
    if isinstance(checkpoint, ModelCheckpoint) and checkpoint.best_model_path:
        return checkpoint.best_model_path
    return None


def summary(trainer: Trainer, run_dir: Path, metrics: dict[str, float]) -> str:
    """Return the closing report: final metrics and where every output was written."""
    lines = ["", f"lsuite: run finished in {run_dir}"]
    shown = {k: v for k, v in sorted(metrics.items()) if k.split("/")[0] in ("test", "val")}
    if shown:
        lines.append("  metrics:     " + "  ".join(f"{k}={v:.4f}" for k, v in shown.items()))
    lines.append(f"  config:      {run_dir / 'config.yaml'} (composed: {run_dir / '.hydra'})")
    checkpoint = trainer.checkpoint_callback
    if isinstance(checkpoint, ModelCheckpoint) and checkpoint.dirpath:
        best = checkpoint.best_model_path or "-"
        lines.append(f"  checkpoints: {checkpoint.dirpath} (best: {Path(best).name})")
    for logger in trainer.loggers:
        where = _logger_dir(logger)
        lines.append(f"  logger:      {type(logger).__name__} -> {where}")
    probes = [c for c in trainer.callbacks if isinstance(c, ProbeCallback)]
    for probe in probes:  # only records that were written (none under fast_dev_run)
        path = _written(probe)
        if path is not None:
            lines.append(f"  probe:       {probe.probe.name} -> {path}")
    if probes and (run_dir / "plots").is_dir():
        lines.append(f"  plots:       {run_dir / 'plots'}")
    return "\n".join(lines)


def _written(probe: ProbeCallback) -> Path | None:
    """Return the probe's records file when it exists, else None."""
    try:
        path = Path(probe.records_path)
    except RuntimeError:  # never set up
        return None
    return path if path.is_file() else None


def _logger_dir(logger: Any) -> str | None:
    """Return where a logger writes: wandb's offline run directory, else its log or save dir."""
    if any(cls.__name__ == "WandbLogger" for cls in type(logger).__mro__):
        return str(Path(logger.experiment.dir).parent)
    return getattr(logger, "log_dir", None) or logger.save_dir


def _finish_wandb(loggers: list[Any]) -> None:
    """Close the wandb run so the next job of a multirun starts its own."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        wandb.finish()


register_resolvers()  # at import, so jobs unpickled by the joblib and submitit launchers have them


@hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    quiet_known_noise()  # again: launchers may run jobs in fresh worker processes
    route_lightning_logs()  # Hydra has configured logging by now
    name_sweep(cfg)
    name_run(cfg)
    return run_job(train, cfg)


def main() -> None:
    """Entry point of ``lsuite-train``: check the command line, then run the Hydra app."""
    quiet_known_noise()
    try:
        sys.argv[1:] = with_implied_run_dir(sys.argv[1:])  # resume=PATH: its run dir
        check_command_line(sys.argv[1:], config_dir())
    except ConfigError as error:
        print(f"lsuite-train: error: {error}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
