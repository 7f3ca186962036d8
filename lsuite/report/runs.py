"""Read the runs of a sweep directory: overrides, status, final metrics and probe records."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import pkgutil
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lsuite.config.job_status import STATUS_FILE, read_status
from lsuite.results.jsonl import read_records

Value = float | int | str | bool | None
"""A hyperparameter value as written in an override (``0.1``, ``128``, ``"sgd"``)."""

METADATA = ("probe", "kind", "step", "epoch", "when", "weights", "seconds", "world_size", "scalars")
"""Fields of a probe record that the callback adds; every other field is a measurement."""

_MAX_LIST = 8


@dataclass
class Run:
    """One job of a sweep, as found on disk.

    Attributes:
        directory: the job's directory.
        overrides: its command-line overrides, e.g. ``["optim.lr=0.1", "model.width=32"]``.
        status: ``completed``, ``diverged``, ``failed``, ``running`` (still running, or killed)
            or ``unknown`` (no ``status.json``).
        error: the error that ended a failed or diverged job.
        metrics: final metrics (``test/acc``, ...), NaN for non-finite ones.
        records: probe records by probe name, in file order.
    """

    directory: Path
    overrides: list[str]
    status: str
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The job directory's name."""
        return self.directory.name

    @property
    def short_name(self) -> str:
        """The job number (the directory name's ``<number>_`` prefix), else the name."""
        match = re.match(r"(\d+)_", self.name)
        return match.group(1) if match else self.name

    @property
    def hyperparameters(self) -> dict[str, Value]:
        """Return the overridden keys and their values (``+``/``++`` prefixes removed)."""
        out: dict[str, Value] = {}
        for override in self.overrides:
            key, sep, text = override.partition("=")
            if sep and not key.startswith("~"):
                out[key.lstrip("+")] = parse_value(text)
        return out


def parse_value(text: str) -> Value:
    """Return an override's value as YAML reads it (``"0.1"`` -> 0.1); lists stay text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (float, int, str, bool)) or value is None else text


def find_runs(sweep_dir: Path) -> list[Run]:
    """Return every run under ``sweep_dir``, ordered by job number then name.

    A run is a directory with ``.hydra/``, ``config.yaml`` or ``status.json``; ``sweep_dir``
    itself counts as the only run when it is one.

    Args:
        sweep_dir: the multirun's directory (``hydra.sweep.dir``) or one run directory.

    Returns:
        The runs found (empty when there are none).
    """
    sweep_dir = Path(sweep_dir)
    if _is_run(sweep_dir):
        return [read_run(sweep_dir)]
    children = [p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    runs = [read_run(p) for p in children if _is_run(p)]
    return sorted(runs, key=lambda run: (_job_number(run.name), run.name))


def read_run(directory: Path) -> Run:
    """Read one run directory (any of its files may be missing)."""
    status = read_status(directory) or {}
    job = status.get("job") or {}
    records: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((directory / "probes").glob("*.jsonl")):
        records[path.stem] = read_records(path)
    metrics = {k: _as_float(v) for k, v in (status.get("metrics") or {}).items()}
    return Run(
        directory=directory,
        overrides=_overrides(directory) or list(job.get("overrides") or []),
        status=status.get("status", "unknown"),
        error=status.get("error"),
        metrics={k: v for k, v in metrics.items() if v is not None},
        records=records,
    )


def measurements(record: dict[str, Any]) -> dict[str, float]:
    """Return the scalar measurements of one probe record, named as loggers got them.

    The names are those of the result's ``scalars()`` (logged as ``probe/<name>/<field>``): from
    the record's ``scalars`` entry when it has one, else by rebuilding the result from the
    record (``record["kind"]`` names a result class in ``lsuite.probes``). A record of an
    unknown kind gives its numbers as they are, short lists of numbers as ``<field>_<i>`` and
    dicts of numbers as ``<field>/<key>``. Non-finite values (strings in the record) become NaN.

    Args:
        record: a line of ``probes/<name>.jsonl``.

    Returns:
        ``field -> value``.
    """
    out: dict[str, float] = {}
    scalars = record.get("scalars")
    if not isinstance(scalars, dict):
        scalars = _result_scalars(record)
    if scalars is not None:
        for key, value in scalars.items():
            _put(out, key, value)
        return out
    for key, value in record.items():
        if key in METADATA:
            continue
        if isinstance(value, list) and 0 < len(value) <= _MAX_LIST:
            for i, item in enumerate(value):
                _put(out, f"{key}_{i}", item)
        elif isinstance(value, dict):
            for name, item in value.items():
                _put(out, f"{key}/{name}", item)
        else:
            _put(out, key, value)
    return out


def final_record(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Return the record with the largest step (the ``fit_end`` one among equals), or None."""
    if not records:
        return None
    return max(records, key=lambda r: (r.get("step", -1), r.get("when") == "fit_end"))


def _result_scalars(record: dict[str, Any]) -> dict[str, float] | None:
    """Rebuild the record's result object and return its ``scalars()``; None if impossible."""
    result_class = _result_class(str(record.get("kind", "")))
    if result_class is None:
        return None
    names = {f.name for f in dataclasses.fields(result_class)}
    values = {k: _revive(v) for k, v in record.items() if k in names}
    try:
        return result_class(**values).scalars()
    except (TypeError, ValueError, KeyError, AttributeError):
        return None


@functools.cache
def _result_class(kind: str) -> type | None:
    """Return the `ProbeResult` subclass called ``kind`` in a module of ``lsuite.probes``."""
    if not kind:
        return None
    import lsuite.probes
    from lsuite.probes.base import ProbeResult

    for module in pkgutil.iter_modules(lsuite.probes.__path__, "lsuite.probes."):
        try:
            found = getattr(importlib.import_module(module.name), kind, None)
        except ImportError:
            continue
        if isinstance(found, type) and issubclass(found, ProbeResult):
            return found
    return None


def _revive(value: Any) -> Any:
    """Turn the ``"nan"``/``"inf"`` strings of a record back into floats, recursively."""
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf"):
        return float(value)
    if isinstance(value, list):
        return [_revive(v) for v in value]
    if isinstance(value, dict):
        return {k: _revive(v) for k, v in value.items()}
    return value


def _put(out: dict[str, float], key: str, value: Any) -> None:
    number = _as_float(value)
    if number is not None:
        out[key] = number


def _as_float(value: Any) -> float | None:
    """Return a number (or a ``"nan"``/``"inf"`` string) as a float; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "+inf"):
        return float(value)
    return None


def _is_run(path: Path) -> bool:
    return any((path / name).exists() for name in (".hydra", "config.yaml", STATUS_FILE))


def _overrides(directory: Path) -> list[str] | None:
    for path, key in (
        (directory / ".hydra" / "overrides.yaml", None),
        (directory / "config.yaml", "overrides"),
    ):
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        found = content.get(key) if key and isinstance(content, dict) else content
        if isinstance(found, list):
            return [str(item) for item in found]
    return None


def _job_number(name: str) -> float:
    match = re.match(r"(\d+)_", name)
    return int(match.group(1)) if match else math.inf
