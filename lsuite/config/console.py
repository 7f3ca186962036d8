"""What ``lsuite-train`` prints: Lightning's messages in the job log, known noise left out."""

from __future__ import annotations

import logging
import warnings

_LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
_TIP_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropLightningTips(logging.Filter):
    """Drop Lightning's advertising tips (litlogger, litmodels); keep every other message."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip: For seamless cloud")


def quiet_known_noise() -> None:
    """Filter the third-party messages a default run would print that say nothing about it.

    Each filter matches one message from one module, so nothing else is hidden:

    - Lightning's "💡 Tip: ... litlogger" (and litmodels) advertisement, logged at INFO;
    - torch's FutureWarning about ``LeafSpec``, raised by Lightning's own ``_pytree`` helper
      (nothing lsuite calls; fixed in later Lightning releases).

    wandb's "anonymous setting" warning is avoided at its source instead
    (`lsuite.config.loggers.wandb_logger`).
    """
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    for name in _TIP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningTips) for f in logger.filters):
            logger.addFilter(_DropLightningTips())


def route_lightning_logs() -> None:
    """Send Lightning's log messages through the root logger that Hydra configured.

    Lightning gives its loggers their own console handler when it is imported before logging is
    configured (always, for a Hydra app), so its messages never reached Hydra's job log
    (``<run_dir>/train.log``). With Hydra's handlers on the root logger, this removes that
    handler and lets the messages propagate: the console shows them as before and the job log
    keeps a copy. Without handlers on the root logger (Hydra's logging disabled) it does nothing.
    """
    if not logging.getLogger().handlers:
        return
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


__all__ = ["quiet_known_noise", "route_lightning_logs"]
