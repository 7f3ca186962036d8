"""Find a run's checkpoints (``last``, ``best``, ``all`` or paths) and read their step and epoch."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lsuite.errors import ConfigError

CHOICES = ("last", "best", "all")
"""The named ``--ckpt`` choices; anything else is a path."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file and where in training it was saved.

    Attributes:
        path: the ``.ckpt`` file.
        step: the trainer's global step when it was saved (0 for a plain state dict).
        epoch: the epoch it was saved in (0 for a plain state dict).
    """

    path: Path
    step: int
    epoch: int


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint or state-dict file on the CPU with ``torch.load(weights_only=True)``.

    Args:
        path: the file.

    Returns:
        The loaded mapping.

    Raises:
        ConfigError: when the file is missing or cannot be read.
    """
    if not path.is_file():
        raise ConfigError(f"checkpoint: got {str(path)!r}; expected an existing file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file it cannot read
        raise ConfigError(
            f"checkpoint: cannot read {str(path)!r} with torch.load(weights_only=True) "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__})"
        ) from error
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"checkpoint: {str(path)!r} holds a {type(loaded).__name__}, not a dict")
    return dict(loaded)


def describe(path: Path, loaded: Mapping[str, Any]) -> Checkpoint:
    """Return the `Checkpoint` of a loaded file (step and epoch 0 when it has none)."""
    return Checkpoint(
        path=path, step=int(loaded.get("global_step", 0)), epoch=int(loaded.get("epoch", 0))
    )


def checkpoint_dir(run_dir: Path, cfg: Mapping[str, Any] | None = None) -> Path:
    """Return where a run's checkpoints are: the checkpoint callbacks' ``dirpath`` or the default.

    Args:
        run_dir: the run directory.
        cfg: the run's config (``callbacks.model_checkpoint.dirpath``, else
            ``callbacks.last_checkpoint.dirpath``, is used when set).

    Returns:
        The checkpoint directory (``<run_dir>/checkpoints`` by default).
    """
    callbacks = (cfg or {}).get("callbacks") or {}
    for key in ("model_checkpoint", "last_checkpoint"):
        node = callbacks.get(key)
        dirpath = node.get("dirpath") if isinstance(node, Mapping) else None
        if dirpath:
            return Path(dirpath)
    return run_dir / "checkpoints"


def find_checkpoints(directory: Path, choices: Sequence[str]) -> list[Checkpoint]:
    """Resolve ``--ckpt`` choices to checkpoints, in order of training step for ``all``.

    Args:
        directory: the run's checkpoint directory.
        choices: ``["last"]``, ``["best"]``, ``["all"]`` or paths (absolute, relative to the
            working directory, or file names in ``directory``).

    Returns:
        The checkpoints, in the order given (``all``: by step, then by name, ``last.ckpt`` last).

    Raises:
        ConfigError: when a choice finds no checkpoint.
    """
    out: list[Checkpoint] = []
    for choice in choices:
        if choice == "all":
            files = sorted(directory.glob("*.ckpt")) if directory.is_dir() else []
            found = [describe(p, read_checkpoint(p)) for p in files]
            found.sort(key=lambda c: (c.step, c.path.name == "last.ckpt", c.path.name))
            if not found:
                raise ConfigError(f"--ckpt: got 'all'; no .ckpt files in {str(directory)!r}")
            out.extend(found)
        elif choice == "last":
            out.append(_described(_last(directory)))
        elif choice == "best":
            out.append(_described(_best(directory)))
        else:
            out.append(_described(_path(choice, directory)))
    return out


def _described(path: Path) -> Checkpoint:
    return describe(path, read_checkpoint(path))


def _last(directory: Path) -> Path:
    path = directory / "last.ckpt"
    if not path.is_file():
        raise ConfigError(f"--ckpt: got 'last'; no last.ckpt in {str(directory)!r}")
    return path


def _best(directory: Path) -> Path:
    last = directory / "last.ckpt"
    if last.is_file():
        for key, state in read_checkpoint(last).get("callbacks", {}).items():
            best = state.get("best_model_path") if str(key).startswith("ModelCheckpoint") else None
            if best and Path(best).is_file():
                return Path(best)
    candidates = sorted(directory.glob("best*.ckpt")) if directory.is_dir() else []
    if not candidates:
        raise ConfigError(f"--ckpt: got 'best'; no best checkpoint in {str(directory)!r}")
    return candidates[-1]


def _path(choice: str, directory: Path) -> Path:
    for candidate in (Path(choice), directory / choice):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"--ckpt: got {choice!r}; expected {', '.join(CHOICES)} or an existing checkpoint file "
        f"(also looked in {str(directory)!r})"
    )


__all__ = ["CHOICES", "Checkpoint", "checkpoint_dir", "describe", "find_checkpoints"]
