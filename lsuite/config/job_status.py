"""Run one ``lsuite-train`` job and record how it ended in ``<run_dir>/status.json``."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from lsuite.callbacks.divergence import TrainingDiverged
from lsuite.errors import ConfigError
from lsuite.results.jsonl import write_atomic

log = logging.getLogger("lsuite")

STATUS_FILE = "status.json"
"""Name of the status file in every run directory."""

Status = Literal["running", "completed", "diverged", "failed", "interrupted"]
"""``running`` until the job ends (and forever if it was killed), then one of the others;
``interrupted`` after Ctrl-C (SIGINT)."""

INTERRUPTED_EXIT = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""

_TRACEBACK_LINES = 30


def run_job(task: Callable[[DictConfig], dict[str, float]], cfg: DictConfig) -> float | None:
    """Run ``task(cfg)`` as one Hydra job, writing ``status.json`` when it starts and ends.

    A job ends ``completed``; ``diverged`` when it raised `TrainingDiverged` or finished with
    a non-finite loss metric; ``interrupted`` on Ctrl-C (`KeyboardInterrupt`: the program ends
    with status 130, a sweep included; checkpoints and records written so far stay);
    ``failed`` when it raised anything else. In a multirun
    (``-m`` or ``hydra.mode=MULTIRUN``) a job that failed or diverged is logged with its error
    and the sweep goes on; in a single run it ends the program with a non-zero status: 2 and one
    line for a `ConfigError`, 1 otherwise (with the traceback when it raised).

    Args:
        task: the training function; returns the final metrics.
        cfg: the job's composed config (``cfg.run_dir`` is its directory).

    Returns:
        ``test/acc`` when the job completed and reported it (the value a sweeper optimises),
        else None.

    Raises:
        Exception: whatever ``task`` raised, in a single run (a `ConfigError` exits instead).
    """
    hydra = HydraConfig.get()
    multirun = hydra.mode == RunMode.MULTIRUN
    job = {
        "num": hydra.job.get("num") if multirun else None,
        "override_dirname": hydra.job.override_dirname,
        "overrides": list(hydra.overrides.task),
    }
    run_dir = Path(cfg.run_dir)
    started = time.time()
    write_status(run_dir, "running", job=job, started=started)
    try:
        metrics = task(cfg)
    except KeyboardInterrupt as error:
        path = write_status(run_dir, "interrupted", job=job, started=started, error=error)
        _close_wandb()
        print(f"lsuite-train: interrupted; status recorded in {path}", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT)
    except Exception as error:
        status: Status = "diverged" if isinstance(error, TrainingDiverged) else "failed"
        path = write_status(run_dir, status, job=job, started=started, error=error)
        _close_wandb()
        if multirun:
            log.exception("lsuite-train: job %s %s (%s): %s", job["num"], status, path, error)
            return None
        if isinstance(error, ConfigError):
            print(f"lsuite-train: error: {error}", file=sys.stderr)  # one line, no log prefix
            sys.exit(2)
        raise
    if all_losses_finite(metrics):
        write_status(run_dir, "completed", job=job, started=started, metrics=metrics)
        return metrics.get("test/acc")
    path = write_status(run_dir, "diverged", job=job, started=started, metrics=metrics)
    log.error("lsuite-train: training diverged: a final loss metric is not finite (%s)", path)
    if not multirun:
        sys.exit(1)
    return None


def all_losses_finite(metrics: dict[str, float]) -> bool:
    """Return whether every metric whose key contains ``loss`` (or ``objective``) is finite."""
    return all(
        math.isfinite(value)
        for key, value in metrics.items()
        if "loss" in key or "objective" in key
    )


def write_status(
    run_dir: Path,
    status: Status,
    *,
    job: dict[str, Any],
    started: float,
    error: BaseException | None = None,
    metrics: dict[str, float] | None = None,
) -> Path:
    """Write ``<run_dir>/status.json`` atomically, from global rank zero only.

    Args:
        run_dir: the run directory.
        status: how the job stands.
        job: the Hydra job's ``num``, ``override_dirname`` and ``overrides``.
        started: start time of the job (seconds since the epoch).
        error: the exception that ended the job, if any (its type, message and traceback tail).
        metrics: the final metrics of a job that returned (non-finite values become strings).

    Returns:
        The status file's path.
    """
    path = run_dir / STATUS_FILE
    if rank_zero_only.rank != 0:
        return path
    now = time.time()
    content: dict[str, Any] = {
        "status": status,
        "job": job,
        "started": _iso(started),
        "updated": _iso(now),
        "seconds": round(now - started, 3),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
    if error is not None:
        lines = "".join(traceback.format_exception(error)).rstrip().splitlines()
        content["error"] = f"{type(error).__name__}: {error}"
        content["traceback"] = "\n".join(lines[-_TRACEBACK_LINES:])
    if metrics is not None:
        content["metrics"] = {k: v if math.isfinite(v) else str(v) for k, v in metrics.items()}
    write_atomic(path, json.dumps(content, indent=2) + "\n")
    return path


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """Return the content of ``<run_dir>/status.json``, or None when it is missing or unreadable.

    Args:
        run_dir: the run directory.

    Returns:
        The status dict (``status``, ``job``, ``error``, ``traceback``, ``metrics``...).
    """
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _close_wandb() -> None:
    """Finish a wandb run left open by a failed job, so the next job starts its own."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="seconds")
