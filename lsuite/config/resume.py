"""Continue a run from its last checkpoint (``resume=auto|PATH``) in its own run directory."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from lsuite.errors import ConfigError

log = logging.getLogger("lsuite")
say = rank_zero_only(log.info)  # once per run, not once per DDP process

KEY = "resume"
LAST = "last.ckpt"
_MULTIRUN_FLAGS = ("-m", "--multirun")
_SAFE_VALUE = re.compile(r"^[\w./~@+:-]+$")


def resume_checkpoint(cfg: DictConfig, trainer: Trainer) -> str | None:
    """Return the checkpoint to pass to ``trainer.fit(ckpt_path=...)``, or None to start fresh.

    ``resume=auto`` takes the run directory's own ``last.ckpt`` (where the trainer's
    `ModelCheckpoint` saves it, ``<run_dir>/checkpoints/last.ckpt`` by default) and starts fresh,
    saying so in the log, when there is none. ``resume=PATH`` takes a checkpoint file, or
    ``PATH/checkpoints/last.ckpt`` (or ``PATH/last.ckpt``) of a run directory, and must exist.

    Args:
        cfg: the composed config (``resume``, ``run_dir``).
        trainer: the built trainer (its checkpoint callbacks say where ``last.ckpt`` goes).

    Returns:
        The checkpoint path, or None.

    Raises:
        ConfigError: when ``resume`` names no checkpoint.
    """
    value = cfg.get(KEY)
    if value is None or value == "":
        return None
    if value == "auto":
        for candidate in _own_last_checkpoints(cfg, trainer):
            if candidate.is_file():
                say("resume=auto: continuing from %s", candidate)
                return str(candidate)
        say(
            "resume=auto: no checkpoint in %s; starting fresh (the run directory must be the "
            "same as the interrupted run's, e.g. hydra.run.dir=...)",
            Path(cfg.run_dir) / "checkpoints",
        )
        return None
    checkpoint = checkpoint_of(value)
    say("resume: continuing from %s", checkpoint)
    return str(checkpoint)


def checkpoint_of(value: str | Path) -> Path:
    """Return the checkpoint file a ``resume=PATH`` value names.

    Args:
        value: a checkpoint file, a run directory, or a run's ``checkpoints/`` directory.

    Returns:
        The absolute checkpoint path.

    Raises:
        ConfigError: when no such file exists.
    """
    path = Path(str(value)).expanduser().resolve()
    if path.is_file():
        return path
    for candidate in (path / "checkpoints" / LAST, path / LAST):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"{KEY}: got {str(value)!r}; expected auto, null, a checkpoint file or a run directory "
        f"holding checkpoints/{LAST}"
    )


def run_dir_of(value: str | Path) -> Path:
    """Return the run directory a ``resume=PATH`` value belongs to.

    ``RUN/checkpoints/last.ckpt`` and ``RUN/checkpoints`` give ``RUN``; another file gives its
    folder; a directory is the run directory itself.

    Args:
        value: the ``resume`` value (not ``auto``).

    Returns:
        The absolute run directory.

    Raises:
        ConfigError: when no checkpoint exists there.
    """
    checkpoint = checkpoint_of(value)
    folder = checkpoint.parent
    return folder.parent if folder.name == "checkpoints" else folder


def with_implied_run_dir(args: Sequence[str]) -> list[str]:
    """Add ``hydra.run.dir=RUN`` to a command line with ``resume=PATH``, so it writes into RUN.

    Nothing is added for ``resume=auto`` or null, in a multirun (each job's directory is its
    own), or when ``hydra.run.dir`` is given.

    Args:
        args: the command-line arguments (without the program name).

    Returns:
        The arguments, with the run directory appended when implied.

    Raises:
        ConfigError: when ``resume=PATH`` names no checkpoint.
    """
    args = list(args)
    values = [a.split("=", 1)[1] for a in args if re.match(rf"^\+*{KEY}=", a)]
    if not values or any(a in _MULTIRUN_FLAGS for a in args):
        return args
    if any(re.match(r"^\+*hydra\.(run\.dir|mode)=", a) for a in args):
        return args
    value = values[-1].strip("'\"")
    if value in ("auto", "null", ""):
        return args
    run_dir = str(run_dir_of(value))
    quoted = run_dir if _SAFE_VALUE.match(run_dir) else "'" + run_dir.replace("'", r"\'") + "'"
    return [*args, f"hydra.run.dir={quoted}"]


def _own_last_checkpoints(cfg: DictConfig, trainer: Trainer) -> list[Path]:
    """Where this run's ``last.ckpt`` is saved.

    Each checkpoint callback with ``save_last``, and each unmonitored one whose file is named
    ``last`` (`LastCheckpoint`, ``callbacks.last_checkpoint``), in the trainer's order.

    Returns:
        The candidate paths, the default ``<run_dir>/checkpoints/last.ckpt`` last.
    """
    found = []
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint) or not callback.dirpath:
            continue
        name = callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION
        if callback.save_last or (callback.monitor is None and callback.filename == "last"):
            found.append(Path(callback.dirpath) / name)
    found.append(Path(cfg.run_dir) / "checkpoints" / LAST)
    return list(dict.fromkeys(found))
