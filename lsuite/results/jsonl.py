"""Append-only JSON-lines files for probe records, and atomic writes of whole files."""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lsuite.results.records import ProbeRecord, read_record

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


def read_probe_records(path: str | Path) -> list[ProbeRecord]:
    """Return every complete record of a ``.jsonl`` file as a `ProbeRecord` (schema 1 or 2).

    Args:
        path: the ``.jsonl`` file; a missing file has no records.

    Returns:
        The records in file order, results rebuilt by class (`read_record`).
    """
    return [read_record(raw) for raw in read_records(path)]


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write a whole file under a temporary name in the same directory, then move it into place.

    The file gets the mode a plain ``open`` gives (``0o666`` less the umask, so 0644 under the
    usual umask 022), not the 0600 of ``tempfile.mkstemp``.

    Args:
        path: destination; parent directories are created.
        data: the file's content.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # The kernel applies the umask to 0o666, as for open(path, "w").
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
