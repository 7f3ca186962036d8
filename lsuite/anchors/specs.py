"""Parse point specs: the names of points in weight space that a probe needs besides its own."""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import torch

from lsuite.errors import ConfigError

SpecKind = Literal["init", "epoch", "step", "middle", "current", "trajectory", "file", "run"]
RunCheckpoint = Literal["last", "best", "step"]

OBSERVED_KINDS = ("init", "epoch", "step", "middle", "trajectory")
"""Kinds resolved from weights seen during training (a `WeightHistory`)."""

_NUMBERED = re.compile(r"^(epoch|step):(\d+)$")
_RUN_SUFFIX = re.compile(r"^(?P<dir>.+?):(?P<which>last|best|step:(?P<step>\d+))$")

EXPECTED = (
    "'init', 'middle', 'current', 'epoch:N', 'step:N', the path of a checkpoint / state-dict "
    "file, or a run directory as RUN_DIR, RUN_DIR:last, RUN_DIR:best or RUN_DIR:step:N"
)


@dataclasses.dataclass(frozen=True)
class PointSpec:
    """One parsed point spec.

    Attributes:
        text: the spec as written.
        kind: ``init`` (weights at step 0), ``epoch`` (end of epoch ``number``, 0-based),
            ``step`` (observed at global step ``number``), ``middle`` (the middle observation),
            ``current`` (the point being measured), ``trajectory`` (every observation),
            ``file`` (a checkpoint or state dict at ``path``) or ``run`` (a checkpoint of the
            run directory ``path``: ``which`` is ``last``, ``best`` or ``step`` ``number``).
        number: the epoch or step for ``epoch``, ``step`` and ``run`` with ``which="step"``.
        path: the file or run directory.
        which: for ``run``: which checkpoint.
    """

    text: str
    kind: SpecKind
    number: int | None = None
    path: Path | None = None
    which: RunCheckpoint | None = None


def parse_spec(value: object, key: str, check_files: bool = True) -> PointSpec:
    """Parse a point spec, checking that a file or run directory exists and can be read.

    Forms: ``init``, ``middle``, ``current`` (also ``final``), ``trajectory``, ``epoch:N``,
    ``step:N``, a file (Lightning ``.ckpt`` or a saved state dict), a run directory
    (``RUN_DIR``: its ``checkpoints/last.ckpt``), ``RUN_DIR:last``, ``RUN_DIR:best``
    (``checkpoints/best*.ckpt``) or ``RUN_DIR:step:N`` (the checkpoint saved at global step N).

    Args:
        value: the spec (a `PointSpec` is returned as it is).
        key: the argument name for error messages (``start``, ``points``).
        check_files: read the file's header now (missing or corrupt files fail here).

    Returns:
        The parsed spec.

    Raises:
        ConfigError: for anything else, or a missing / unreadable file or checkpoint.
    """
    if isinstance(value, PointSpec):
        return value
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: got {value!r}; expected {EXPECTED}")
    if value in ("init", "middle", "current", "final", "trajectory"):
        kind = "current" if value == "final" else value
        return PointSpec(value, kind)  # type: ignore[arg-type]
    numbered = _NUMBERED.match(value)
    if numbered:
        return PointSpec(value, numbered.group(1), int(numbered.group(2)))  # type: ignore[arg-type]
    if value.startswith(("epoch:", "step:")):
        raise ConfigError(
            f"{key}: got {value!r}; expected 'epoch:N' or 'step:N' with N an int >= 0"
        )
    path = Path(value).expanduser()
    suffix = _RUN_SUFFIX.match(value)
    if suffix and not path.exists() and Path(suffix.group("dir")).expanduser().is_dir():
        step = suffix.group("step")
        which: RunCheckpoint = "step" if step is not None else suffix.group("which")  # type: ignore[assignment]
        spec = PointSpec(
            value,
            "run",
            int(step) if step is not None else None,
            Path(suffix.group("dir")).expanduser(),
            which,
        )
    elif path.is_dir():
        spec = PointSpec(value, "run", None, path, "last")
    elif path.is_file():
        spec = PointSpec(value, "file", None, path)
    else:
        raise ConfigError(f"{key}: got {value!r}; no such file or directory; expected {EXPECTED}")
    if check_files:
        from lsuite.anchors.files import checkpoint_path

        check_readable(checkpoint_path(spec, key), key)
    return spec


def parse_specs(value: object, key: str, check_files: bool = True) -> PointSpec | list[PointSpec]:
    """Parse one spec or a list of specs (``points: [init, middle, current]``)."""
    if isinstance(value, (list, tuple)):
        return [parse_spec(v, key, check_files) for v in value]
    return parse_spec(value, key, check_files)


def needs_history(spec: object) -> bool:
    """Return True when ``spec`` (or any spec of a list) names weights seen during training."""
    if isinstance(spec, (list, tuple)):
        return any(needs_history(s) for s in spec)
    return parse_spec(spec, "spec", check_files=False).kind in OBSERVED_KINDS


def check_reachable(spec: object, max_epochs: int | None, max_steps: int | None, key: str) -> None:
    """Raise when an ``epoch:N`` / ``step:N`` spec can never be observed under the limits.

    Args:
        spec: a spec or list of specs.
        max_epochs: the trainer's ``max_epochs`` (None or -1: unlimited).
        max_steps: the trainer's ``max_steps`` (None or -1: unlimited).
        key: the argument name for error messages.

    Raises:
        ConfigError: for ``epoch:N`` with ``N >= max_epochs`` or ``step:N`` with
            ``N > max_steps``.
    """
    if isinstance(spec, (list, tuple)):
        for s in spec:
            check_reachable(s, max_epochs, max_steps, key)
        return
    parsed = parse_spec(spec, key, check_files=False)
    number = -1 if parsed.number is None else parsed.number
    if parsed.kind == "epoch" and max_epochs is not None and 0 <= max_epochs <= number:
        raise ConfigError(
            f"{key}: got {parsed.text!r}; the run has max_epochs={max_epochs} (epochs 0 to "
            f"{max_epochs - 1}), so epoch {parsed.number} is never reached"
        )
    if parsed.kind == "step" and max_steps is not None and 0 <= max_steps < number:
        raise ConfigError(
            f"{key}: got {parsed.text!r}; the run has max_steps={max_steps}, so step "
            f"{parsed.number} is never reached"
        )


def check_readable(file: Path, key: str) -> None:
    """Raise unless ``file`` loads with ``torch.load(weights_only=True)`` (memory-mapped).

    Raises:
        ConfigError: when it cannot be read.
    """
    read_file(file, key)


def read_file(file: Path, key: str) -> object:
    """Return ``torch.load(file, weights_only=True)`` (memory-mapped where the format allows).

    Raises:
        ConfigError: when the file is missing or cannot be read.
    """
    if not file.is_file():
        raise ConfigError(f"{key}: got {str(file)!r}; no such file")
    try:
        return _load(file)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        raise ConfigError(
            f"{key}: cannot read {str(file)!r} with torch.load(weights_only=True) ({error}); "
            "save the weights with torch.save(model.state_dict(), path) or use a Lightning "
            ".ckpt"
        ) from error


def spec_texts(specs: Mapping[str, object]) -> Iterable[str]:
    """Yield the text of every spec in a ``name -> spec | [spec, ...]`` mapping."""
    for value in specs.values():
        for spec in value if isinstance(value, (list, tuple)) else [value]:
            yield spec.text if isinstance(spec, PointSpec) else str(spec)


def _load(file: Path) -> object:
    try:  # memory-mapped: a large checkpoint is checked without reading it all
        return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # not the zip format (mmap needs it), or corrupt: read it plainly
        return torch.load(file, map_location="cpu", weights_only=True)
