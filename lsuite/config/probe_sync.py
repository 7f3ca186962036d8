"""Start the processes of lsuite-probe (Lightning Fabric for several devices) and their `Sync`."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from lsuite.errors import ConfigError
from lsuite.session import Sync


def start_processes(cfg: DictConfig) -> tuple[Sync, torch.device]:
    """Launch ``trainer.devices`` processes with Fabric (one: none) and return this rank's sync.

    With ``devices > 1`` the command re-runs itself once per extra process
    (``Fabric.launch``), and the probes' reductions are ``fabric.all_reduce`` sums.

    Args:
        cfg: the config; ``trainer.accelerator`` and ``trainer.devices`` are used.

    Returns:
        ``(sync, device)`` for this process.

    Raises:
        ConfigError: for a device count that is not a positive int.
    """
    trainer = cfg.get("trainer") or {}
    devices: Any = trainer.get("devices", 1)
    accelerator = str(trainer.get("accelerator", "auto"))
    if devices in ("auto", -1):
        devices = 1
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ConfigError(f"trainer.devices: got {devices!r}; expected an int >= 1")
    use_cuda = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if devices == 1:
        return Sync(), torch.device("cuda" if use_cuda else "cpu")
    from lightning.fabric import Fabric

    fabric = Fabric(accelerator="cuda" if use_cuda else "cpu", devices=devices, strategy="ddp")
    fabric.launch()

    def reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
        return fabric.all_reduce(tensor, reduce_op="sum")

    sync = Sync(
        rank=fabric.global_rank,
        world_size=fabric.world_size,
        reduce_sum=reduce_sum,
        barrier=fabric.barrier,
    )
    return sync, fabric.device


__all__ = ["start_processes"]
