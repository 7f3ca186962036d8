"""Logger factories for ``conf/logger/``, where a plain ``_target_`` class does not fit."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import WandbLogger


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


__all__ = ["wandb_logger"]
