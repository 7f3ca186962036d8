"""Append-only JSON-lines files for probe records, and atomic writes of whole files."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one complete JSON line, in a single write, flushed to disk.

    Earlier lines are never rewritten, so a crash later in a run loses nothing written before.

    Args:
        path: the ``.jsonl`` file; created with its parent directories when missing.
        record: a JSON-safe dict.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a ``.jsonl`` file, skipping (with a warning) a line cut by a crash.

    Args:
        path: the ``.jsonl`` file.

    Yields:
        One dict per complete line.
    """
    with Path(path).open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: skipping an incomplete record", path, number)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Return every complete record of a ``.jsonl`` file (empty when the file does not exist)."""
    path = Path(path)
    return list(iter_records(path)) if path.exists() else []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write a whole file under a temporary name in the same directory, then move it into place.

    Args:
        path: destination; parent directories are created.
        data: the file's content.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
