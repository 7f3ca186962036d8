"""Name a multirun's sweep and job directories, for grouping its runs in loggers."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

MAX_DIRNAME = 200
"""Longest job directory name (file systems allow 255 bytes)."""


def name_sweep(cfg: DictConfig) -> None:
    """Set ``cfg.sweep_name`` to the sweep directory's name in a multirun when it is null.

    The wandb logger's ``group`` is ``${sweep_name}``, so every job of one sweep lands in one
    group; a single run keeps ``sweep_name: null`` (no group) unless it is set explicitly.

    Args:
        cfg: the job's composed config; changed in place.
    """
    hydra = HydraConfig.get()
    if hydra.mode == RunMode.MULTIRUN and cfg.get("sweep_name") is None:
        with open_dict(cfg):
            cfg.sweep_name = Path(str(hydra.sweep.dir)).name


def name_run(cfg: DictConfig) -> None:
    """Give a run without overrides a name: ``cfg.run_name`` is the run directory's name then.

    ``run_name`` is ``${hydra:job.override_dirname}`` by default (the wandb run name), which is
    empty for a run without overrides; such a run is named after its directory (``20-33-04``
    for ``outputs/2026-12-01/20-33-04``), ``default`` when even that is empty.

    Args:
        cfg: the job's composed config; changed in place.
    """
    if str(cfg.get("run_name") or ""):
        return
    with open_dict(cfg):
        cfg.run_name = Path(str(cfg.run_dir)).name or "default"


def job_dirname(overrides: str) -> str:
    """Turn a job's ``override_dirname`` into one safe directory name.

    Path separators become ``_`` (a value such as ``/data/x`` would otherwise nest directories
    or leave the sweep directory), and a name longer than `MAX_DIRNAME` characters is cut and
    ends with a hash of the whole, so it stays unique.

    Args:
        overrides: e.g. ``"model.width=128,optim.lr=0.1"``.

    Returns:
        The directory name (``"-"`` for a job without overrides).
    """
    name = overrides.replace(os.sep, "_").replace("/", "_") or "-"
    if len(name.encode()) <= MAX_DIRNAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    return name.encode()[: MAX_DIRNAME - 11].decode(errors="ignore") + "~" + digest


def register_resolvers() -> None:
    """Register ``${lsuite.dirname:...}`` (`job_dirname`), used by ``hydra.sweep.subdir``."""
    OmegaConf.register_new_resolver("lsuite.dirname", job_dirname, replace=True)
