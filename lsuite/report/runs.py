"""Read the runs of a sweep directory: overrides, status, final metrics and probe records."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lsuite.config.job_status import STATUS_FILE, read_status
from lsuite.errors import ConfigError
from lsuite.results.jsonl import read_records
from lsuite.results.records import ProbeRecord, read_record

Value = float | int | str | bool | None
"""A hyperparameter value as written in an override (``0.1``, ``128``, ``"sgd"``)."""


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
        records: probe records by probe name (the file's stem), in file order; failure records
            (``result`` None, ``error`` set) included.
        unreadable: one line per record that could not be read (unknown kind, newer schema).
        probes: the names of the probes its config asked for (``probes`` of ``config.yaml`` or
            ``.hydra/config.yaml``); None when no config says.
    """

    directory: Path
    overrides: list[str]
    status: str
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    records: dict[str, list[ProbeRecord]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    probes: frozenset[str] | None = None

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
    records: dict[str, list[ProbeRecord]] = {}
    unreadable: list[str] = []
    for path in sorted((directory / "probes").glob("*.jsonl")):
        records[path.stem] = []
        for number, raw in enumerate(read_records(path), start=1):
            try:
                record = read_record(raw)
            except ConfigError as error:
                unreadable.append(f"probes/{path.name}: record {number}: {error}")
                continue
            meta = {"probe": path.stem, **record.meta}
            records[path.stem].append(dataclasses.replace(record, meta=meta))
    metrics = {k: _as_float(v) for k, v in (status.get("metrics") or {}).items()}
    return Run(
        directory=directory,
        overrides=_overrides(directory) or list(job.get("overrides") or []),
        status=status.get("status", "unknown"),
        error=status.get("error"),
        metrics={k: v for k, v in metrics.items() if v is not None},
        records=records,
        unreadable=unreadable,
        probes=_configured_probes(directory),
    )


def measurements(record: ProbeRecord) -> dict[str, float]:
    """Return the scalar measurements of one probe record, named as loggers got them.

    The names are those of the result's ``scalars()`` (logged as ``probe/<name>/<field>``);
    non-finite values are NaN. A failure record has none.

    Args:
        record: a record of ``probes/<name>.jsonl``.

    Returns:
        ``field -> value``.
    """
    out: dict[str, float] = {}
    if record.result is not None:
        for key, value in record.result.scalars().items():
            _put(out, key, value)
    return out


def final_record(records: list[ProbeRecord]) -> ProbeRecord | None:
    """Return the measured record with the largest step (``fit_end`` among equals), or None.

    Records written during training come first; those ``lsuite-probe`` wrote later for saved
    checkpoints count only when there are no others.
    """
    measured = [r for r in records if r.result is not None]
    if not measured:
        return None
    return max(
        measured,
        key=lambda r: (
            r.meta.get("source") != "lsuite-probe",
            _step(r),
            r.meta.get("when") == "fit_end",
        ),
    )


def failures(records: list[ProbeRecord]) -> list[ProbeRecord]:
    """Return the failure records (the probe raised; ``error`` set, no result), in file order."""
    return [r for r in records if r.result is None]


def _step(record: ProbeRecord) -> int:
    step = record.step
    return -1 if step is None else step


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


def _configured_probes(directory: Path) -> frozenset[str] | None:
    """Return the names of the probes a run's config asked for (a probe's ``name`` or its key)."""
    for path in (directory / "config.yaml", directory / ".hydra" / "config.yaml"):
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(content, dict) or "probes" not in content:
            continue
        probes = content.get("probes") or {}
        if not isinstance(probes, dict):
            return None
        names = set()
        for key, spec in probes.items():
            probe = spec.get("probe") if isinstance(spec, dict) else None
            name = probe.get("name") if isinstance(probe, dict) else None
            names.add(str(name or key))
        return frozenset(names)
    return None


def _job_number(name: str) -> float:
    match = re.match(r"(\d+)_", name)
    return int(match.group(1)) if match else math.inf
