"""Logger factories for ``conf/logger/``, where a plain ``_target_`` class does not fit."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger("lsuite")
say = rank_zero_only(log.info)  # once per run, not once per DDP process

_RUN_DIR = re.compile(r"^(?:offline-)?run-\d{8}_\d{6}-(?P<id>[A-Za-z0-9]+)$")
"""wandb's directory of one run under ``<save_dir>/wandb/``: ``[offline-]run-<time>-<id>``."""


def wandb_logger(**kwargs: Any) -> WandbLogger:
    """Return Lightning's `WandbLogger` made with ``kwargs``, without the ``anonymous`` setting.

    Lightning passes ``anonymous=None`` to ``wandb.init`` unless it is set, and wandb (>= 0.19)
    warns "The anonymous setting has no effect" whenever the setting is passed at all; the
    setting is dropped when it was not asked for.

    Args:
        kwargs: `WandbLogger`'s arguments (``save_dir``, ``offline``, ``project``, ``name``...).

    Returns:
        The logger.
    """
    logger = WandbLogger(**kwargs)
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and init.get("anonymous") is None:
        init.pop("anonymous", None)
    return logger


def continue_wandb_runs(loggers: Sequence[Logger]) -> None:
    """Point every `WandbLogger` of a resumed run at the wandb run it wrote before.

    The earlier run's id is that of the newest ``[offline-]run-<time>-<id>`` directory under
    ``<save_dir>/wandb/`` (the run directory's, as ``conf/logger/wandb.yaml`` sets it).
    `WandbLogger` passes ``resume="allow"`` to ``wandb.init``, so the resumed run continues that
    wandb run (offline, ``wandb sync`` of both directories uploads one run) instead of starting a
    new one. Loggers given an ``id``, or whose run has started, are left alone; so is a logger
    with no earlier run.

    Args:
        loggers: the run's loggers, before any of them logged.
    """
    for logger in loggers:
        if not isinstance(logger, WandbLogger) or logger._experiment is not None:
            continue
        init = logger._wandb_init
        if init.get("id") or not init.get("dir"):
            continue
        earlier = sorted(
            (p.name.split("run-", 1)[1], match["id"])
            for p in (Path(init["dir"]) / "wandb").glob("*run-*")
            if p.is_dir() and (match := _RUN_DIR.match(p.name))
        )
        if earlier:
            init["id"] = logger._id = earlier[-1][1]
            say("resume: wandb continues run %s", init["id"])


__all__ = ["continue_wandb_runs", "wandb_logger"]
