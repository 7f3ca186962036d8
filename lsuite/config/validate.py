"""Whole-config checks that run before anything is built or trained."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import torch
from lightning.pytorch.callbacks import StochasticWeightAveraging
from omegaconf import DictConfig, ListConfig

from lsuite.errors import ConfigError, require
from lsuite.optim.closure_optimizer import ClosureOptimizer, check_base_optimizer

_GPU_ACCELERATORS = ("gpu", "cuda")


def validate(cfg: DictConfig) -> None:
    """Check values that no single constructor can check, naming the key that is wrong.

    Args:
        cfg: the composed config.

    Raises:
        ConfigError: for the first problem found.
    """
    for key, lr in _find(cfg.get("optim"), "lr", "optim"):
        require(isinstance(lr, (int, float)) and lr > 0, key, lr, "a number > 0")
    require(isinstance(cfg.get("seed"), int), "seed", cfg.get("seed"), "an int")
    require(cfg.get("l2", 0) >= 0, "l2", cfg.get("l2"), "a number >= 0")
    _validate_trainer(cfg.trainer)
    for group in ("callbacks", "probes", "logger"):
        node = cfg.get(group)
        require(
            node is None or isinstance(node, DictConfig),
            group,
            type(node).__name__,
            f"a mapping of named configs (choose files from conf/{group}/)",
        )
        for name, child in (node or {}).items():
            if child is not None and "_target_" not in child:
                raise ConfigError(f"{group}.{name}: got a node without _target_; expected a config")
    _validate_closure_optimizer(cfg)
    _validate_swa(cfg)


def _validate_trainer(trainer: DictConfig) -> None:
    max_epochs = trainer.get("max_epochs")
    max_steps = trainer.get("max_steps", -1)
    unbounded = max_epochs == -1 and max_steps is not None and max_steps > 0
    require(
        unbounded or (isinstance(max_epochs, int) and max_epochs >= 1),
        "trainer.max_epochs",
        max_epochs,
        "an int >= 1 (or -1 with trainer.max_steps > 0)",
    )
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in _GPU_ACCELERATORS:
        devices = trainer.get("devices", 1)
        wanted = len(devices) if isinstance(devices, (list, ListConfig)) else devices
        available = torch.cuda.device_count()
        if wanted == -1 or wanted == "auto":
            wanted = 1
        if not isinstance(wanted, int) or wanted > available:
            raise ConfigError(
                f"trainer.devices: got {devices!r} with trainer.accelerator={accelerator}; found "
                f"{available} CUDA GPU(s); use trainer=default or trainer=ddp_cpu on this machine"
            )


def _validate_closure_optimizer(cfg: DictConfig) -> None:
    """Check a closure optimizer's settings, base optimizer and the trainer settings it needs.

    A `ClosureOptimizer` (SAM, Entropy-SGD) names its settings check and what it needs from the
    trainer in its ``requirements``; the messages name the optimizer.
    """
    optim = cfg.get("optim")
    optimizer_class = _target_class(optim)
    if optimizer_class is None or not issubclass(optimizer_class, ClosureOptimizer):
        return
    needs = getattr(optimizer_class, "requirements", None)
    if needs is None:  # the abstract base itself: the build step reports it
        return
    needs.check_settings(**{k: optim[k] for k in needs.settings_keys() if k in optim})
    base = optim.get("base_optimizer")
    require(
        isinstance(base, DictConfig) and "_target_" in base,
        "optim.base_optimizer",
        base,
        "an optimizer config with _target_ (e.g. torch.optim.SGD, _partial_: true)",
    )
    base_class = _target_class(base)
    if base_class is not None:
        check_base_optimizer(base_class)
    precision = str(cfg.trainer.get("precision", "32-true"))
    require(
        not precision.startswith("16"),
        "trainer.precision",
        precision,
        f"32-true or bf16-mixed with optim {needs.name} (fp16 loss scaling steps the optimizer "
        f"without the closure that {needs.name} calls {needs.closure_calls})",
    )
    accumulate = cfg.trainer.get("accumulate_grad_batches", 1)
    require(
        accumulate == 1,
        "trainer.accumulate_grad_batches",
        accumulate,
        f"1 with optim {needs.name} ({needs.same_batch} must see the same batch)",
    )


def _validate_swa(cfg: DictConfig) -> None:
    """Check each stochastic weight averaging callback's learning rates and optimizer count."""
    for name, node in (cfg.get("callbacks") or {}).items():
        swa_class = _target_class(node)
        if swa_class is None or not issubclass(swa_class, StochasticWeightAveraging):
            continue
        key = f"callbacks.{name}"
        lrs = node.get("swa_lrs")
        values = list(lrs) if isinstance(lrs, ListConfig) else [lrs]
        require(
            len(values) >= 1 and all(isinstance(v, float) and v > 0 for v in values),
            f"{key}.swa_lrs",
            lrs,
            "a float > 0 (e.g. 0.05) or a list of them, one per parameter group",
        )
        optimizers = _optimizer_names(cfg.get("optim"))
        if len(optimizers) != 1:
            raise ConfigError(
                f"{key}: got {len(optimizers)} optimizers under optim "
                f"({', '.join(optimizers) or 'none'}); expected exactly one "
                "(StochasticWeightAveraging averages the weights of a single optimizer)"
            )


def _optimizer_names(optim: Any) -> list[str]:
    """Name the optimizer configs in ``optim``: itself when it has a target, else its children."""
    if isinstance(optim, DictConfig) and "_target_" in optim:
        return ["optim"]
    children = optim.items() if isinstance(optim, DictConfig) else enumerate(optim or [])
    return [
        f"optim.{key}"
        for key, child in children
        if isinstance(child, DictConfig) and "_target_" in child
    ]


def _target_class(node: Any) -> type | None:
    """Import the class named by a node's ``_target_``.

    Returns:
        The class, or None when the node has no target or it does not import (the build step
        reports that, with its key).
    """
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if not isinstance(target, str) or "." not in target:
        return None
    module_name, _, attribute = target.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) else None


def _find(node: Any, name: str, path: str) -> Iterator[tuple[str, Any]]:
    """Yield ``(full key, value)`` for every key called ``name`` under ``node``."""
    if isinstance(node, DictConfig):
        for key, value in node.items():
            full = f"{path}.{key}"
            if key == name:
                yield full, value
            else:
                yield from _find(value, name, full)
