"""Instantiate the objects of a composed config, one group at a time, with clear errors."""

from __future__ import annotations

import re
from typing import Any

import hydra
from hydra.errors import InstantiationException
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from lsuite.callbacks.rng_state import RNGState
from lsuite.errors import ConfigError
from lsuite.model.classifier import Classifier


def instantiate(node: Any, key: str, **kwargs: Any) -> Any:
    """Instantiate a config node, turning any failure into a `ConfigError` prefixed with its key.

    Args:
        node: the config node with a ``_target_``.
        key: the node's full key, e.g. ``"probes.hessian_trace"``.
        **kwargs: extra arguments passed to the target.

    Returns:
        The object (or a partial for ``_partial_: true`` nodes).

    Raises:
        ConfigError: when the target cannot be imported or rejects its arguments.
    """
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as error:
        raise ConfigError(_message(error, key)) from error
    except ConfigError as error:
        raise ConfigError(_prefixed(str(error), key)) from error


def call(factory: Any, key: str, **kwargs: Any) -> Any:
    """Call a partial from the config, prefixing a `ConfigError` from it with ``key``.

    Args:
        factory: the partial (e.g. a model or optimizer factory).
        key: its config key.
        **kwargs: the remaining arguments.

    Returns:
        What the factory returns.

    Raises:
        ConfigError: when the factory rejects its arguments.
    """
    try:
        return factory(**kwargs)
    except ConfigError as error:
        raise ConfigError(_prefixed(str(error), key)) from error
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{key}: {error}") from error


def build_datamodule(cfg: DictConfig) -> LightningDataModule:
    """Build the data module of ``cfg.data``.

    A config of an earlier version (a run directory's ``config.yaml``) names the split's seed
    ``data.seed``; it is passed on as ``split_seed``.

    Returns:
        The data module (not yet set up).
    """
    node = cfg.data
    if "seed" in node and "split_seed" not in node:
        data = OmegaConf.to_container(node, resolve=True)
        data["split_seed"] = data.pop("seed")
        node = OmegaConf.create(data)
    return instantiate(node, "data")


def build_module(cfg: DictConfig, datamodule: LightningDataModule) -> LightningModule:
    """Build the network for the data's input shape and classes, and the module that trains it.

    The module is ``cfg.module`` (``conf/module/``, a partial; `Classifier` when the config has no
    ``module`` key, as configs of earlier versions), called with ``net``, ``optimizer``,
    ``num_classes``, ``scheduler`` and ``l2``.

    Returns:
        The LightningModule (a `Classifier` by default).
    """
    net_factory = instantiate(cfg.model, "model")
    shape = tuple(datamodule.input_shape)
    classes = int(datamodule.num_classes)
    net = call(net_factory, "model", input_shape=shape, num_classes=classes)
    scheduler = cfg.get("scheduler")
    node = cfg.get("module")
    module_factory = Classifier if node is None else instantiate(node, "module")
    return call(
        module_factory,
        "module",
        net=net,
        optimizer=instantiate(cfg.optim, "optim"),
        num_classes=classes,
        scheduler=None if scheduler is None else instantiate(scheduler, "scheduler"),
        l2=cfg.l2,
    )


def build_callbacks(cfg: DictConfig, *, with_loggers: bool) -> list[Callback]:
    """Build ``cfg.callbacks`` then ``cfg.probes`` (dicts of named nodes, either may be empty).

    A learning-rate monitor is left out when no logger is configured, and a progress bar when
    ``trainer.enable_progress_bar`` is false (Lightning refuses either combination).

    An `RNGState` comes first, so checkpoints hold the generators' states and a resumed run
    (``resume=``) draws the same data order as an uninterrupted one.

    Returns:
        The callbacks: `RNGState`, then those of the config in order, probes last.
    """
    progress_bar = cfg.trainer.get("enable_progress_bar", True)
    callbacks: list[Callback] = [RNGState()]
    for group in ("callbacks", "probes"):
        for name, node in (cfg.get(group) or {}).items():
            if node is None:
                continue
            callback = instantiate(node, f"{group}.{name}")
            if isinstance(callback, LearningRateMonitor) and not with_loggers:
                continue
            if isinstance(callback, ProgressBar) and not progress_bar:
                continue
            callbacks.append(callback)
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """Build every logger of ``cfg.logger`` (a dict of named nodes; empty for ``logger=none``)."""
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is not None:
            loggers.append(instantiate(node, f"logger.{name}"))
    return loggers


def build_trainer(cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger]) -> Trainer:
    """Build the trainer of ``cfg.trainer`` writing into ``cfg.run_dir``."""
    return instantiate(
        cfg.trainer,
        "trainer",
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=cfg.run_dir,
    )


def _message(error: InstantiationException, key: str) -> str:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConfigError):
            return _prefixed(str(cause), _full_key(str(error)) or key)
        cause = cause.__cause__
    first = str(error).strip().splitlines()
    detail = " ".join(line.strip() for line in first[:3] if line.strip())
    return f"{_full_key(str(error)) or key}: {detail}"


def _full_key(text: str) -> str | None:
    match = re.search(r"full_key: (\S+)", text)
    return match.group(1) if match else None


def _prefixed(message: str, key: str) -> str:
    root = key.split(".")[0]
    if message.startswith(f"{root}.") or message.startswith(f"{key}:"):
        return message
    return f"{key}.{message}"
