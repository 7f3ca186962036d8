"""Whole-config checks that run before anything is built or trained."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig

from lsuite.errors import ConfigError, require

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


def _find(node: Any, name: str, path: str) -> Iterator[tuple[str, Any]]:
    """Yield ``(full key, value)`` for every key called ``name`` under ``node``."""
    if isinstance(node, DictConfig):
        for key, value in node.items():
            full = f"{path}.{key}"
            if key == name:
                yield full, value
            else:
                yield from _find(value, name, full)
