"""Tabulate a sweep's runs: tidy measurement rows, one summary row per run, and what is missing."""

from __future__ import annotations

import csv
import fnmatch
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsuite.report.runs import Run, Value, failures, final_record, measurements
from lsuite.results.jsonl import write_atomic
from lsuite.results.records import ProbeRecord

FINISHED = ("completed",)
"""Statuses whose last records are the end of training."""


def hyperparameter_keys(runs: Sequence[Run]) -> list[str]:
    """Return every overridden key of any run, in the order first seen."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.hyperparameters))
    return list(keys)


def swept_keys(runs: Sequence[Run]) -> list[str]:
    """Return the overridden keys whose value differs between runs (the sweep's axes)."""
    out = []
    for key in hyperparameter_keys(runs):
        values = {repr(run.hyperparameters.get(key)) for run in runs}
        if len(values) > 1:
            out.append(key)
    return out


MEASUREMENT_COLUMNS = (
    "probe",
    "step",
    "epoch",
    "when",
    "weights",
    "source",
    "checkpoint",
    "field",
    "value",
)
"""The columns of `measurement_rows` after the run's name, status and overridden keys."""

_CONTEXT = MEASUREMENT_COLUMNS[1:-2]
"""Provenance keys of a record's ``meta`` shown beside each measurement."""


def measurement_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Return one row per run, probe record and measured field (a tidy, long table).

    Columns: ``run``, ``status``, one per overridden key, ``probe``, ``step``, ``epoch``,
    ``when``, ``weights``, ``source`` (``lsuite-train``, ``lsuite-probe``, ...),
    ``checkpoint`` (the file ``lsuite-probe`` measured), ``field``, ``value``. A failed
    measurement is one row with field ``failed`` and value 1 (as loggers get
    ``probe/<name>/failed``).
    """
    keys = hyperparameter_keys(runs)
    rows = []
    for run in runs:
        base = {"run": run.name, "status": run.status}
        base.update({key: run.hyperparameters.get(key) for key in keys})
        for probe, records in run.records.items():
            for record in records:
                context = {"probe": probe, **{k: record.meta.get(k) for k in _CONTEXT}}
                values = measurements(record) if record.result is not None else {"failed": 1.0}
                for name, value in values.items():
                    rows.append({**base, **context, "field": name, "value": value})
    return rows


def final_values(run: Run) -> dict[str, float]:
    """Return the run's final metrics and the last record of each probe as ``probe/field``."""
    out = dict(run.metrics)
    for probe, records in run.records.items():
        last = final_record(records)
        if last is not None:
            out.update({f"{probe}/{k}": v for k, v in measurements(last).items()})
    return out


def run_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Return one row per run: name, job number, status, overridden keys, final values, error.

    ``records`` counts the run's probe records; ``failed_measurements`` names the failed ones
    (``<probe>@step<S>``).
    """
    keys = hyperparameter_keys(runs)
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run.name, "job": run.short_name, "status": run.status}
        row.update({key: run.hyperparameters.get(key) for key in keys})
        row.update(final_values(run))
        row["records"] = sum(len(r) for r in run.records.values())
        failed = [failure_name(r) for records in run.records.values() for r in failures(records)]
        row["failed_measurements"] = ", ".join(failed)
        row["error"] = run.error or ""
        rows.append(row)
    return rows


_ESTIMATE_FIELDS = ("num_", "stderr", "residual", "/")
"""Parts of probe field names that describe an estimate (cost, error, per layer), not the model."""

_STAGES = ("train", "val", "test")


def shown_metrics(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Return the final values worth a column and a figure (the kept ones of `select_fields`)."""
    return select_fields(rows)[0]


def select_fields(
    rows: Sequence[dict[str, Any]], patterns: Sequence[str] = ()
) -> tuple[list[str], dict[str, list[str]]]:
    """Return the final values worth a column and a figure, and those left out with why.

    Kept: final metrics (``test/acc``...) and probe fields (``<probe>/<field>``) that describe
    the model. Left out: estimator details (``num_*``, ``*stderr*``, ``*residual*``, per-layer
    values), values equal in every run that has them (settings such as a radius), and a field
    whose values repeat an earlier field's of the same probe in every run (``eigenvalue_0``
    after ``top_eigenvalue``). With ``patterns`` (shell patterns such as ``hessian_*/trace``),
    exactly the fields matching one of them are kept.

    Args:
        rows: `run_rows`.
        patterns: shell patterns choosing the fields; empty: the rules above.

    Returns:
        The kept fields (final metrics first, then in order seen), and reason -> fields left
        out (``estimator details``, ``the same in every run``, ``repeats of another field``,
        ``not chosen by --fields``).
    """
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(k for k in row if "/" in k))
    ordered = sorted(keys, key=lambda k: k.split("/")[0] not in _STAGES)
    dropped: dict[str, list[str]] = {}
    if patterns:
        kept = [k for k in ordered if any(fnmatch.fnmatchcase(k, p) for p in patterns)]
        rest = [k for k in ordered if k not in kept]
        return kept, ({"not chosen by --fields": rest} if rest else {})
    kept = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for key in ordered:
        stage, _, field = key.partition("/")
        values = tuple(repr(row.get(key)) for row in rows)
        present = [row[key] for row in rows if row.get(key) is not None]
        reason = None
        if stage not in _STAGES:
            if any(part in field for part in _ESTIMATE_FIELDS):
                reason = "estimator details"
            elif len(present) > 1 and len(set(map(repr, present))) == 1:
                reason = "the same in every run"
            elif (stage, values) in seen:
                reason = "repeats of another field"
            else:
                seen.add((stage, values))
        if reason is None:
            kept.append(key)
        else:
            dropped.setdefault(reason, []).append(key)
    return kept, dropped


def stderr_field(fields: Sequence[str], field: str) -> str | None:
    """Return the name of the probe's recorded standard error of ``field``, if it has one.

    ``<probe>/<name>_stderr`` belongs to ``<probe>/<name>`` (sharpness' ``average_sigma_*``);
    a probe's plain ``stderr`` belongs to its first field (``hessian_trace/trace``).

    Args:
        fields: every field name of the probe records (``<probe>/<field>``), in record order.
        field: a ``<probe>/<field>``.
    """
    probe, _, name = field.partition("/")
    if probe in _STAGES or not name:
        return None
    if f"{field}_stderr" in fields:
        return f"{field}_stderr"
    own = [f for f in fields if f.partition("/")[0] == probe]
    if f"{probe}/stderr" in own and own and own[0] == field:
        return f"{probe}/stderr"
    return None


def failure_name(record: ProbeRecord) -> str:
    """Return ``<probe>@step<S>`` (``<probe>`` without a step) naming a measurement."""
    step = record.meta.get("step")
    return record.probe if step is None else f"{record.probe}@step{step}"


def notes(runs: Sequence[Run]) -> list[str]:
    """Say which runs did not finish, have missing or fewer records, or failed measurements.

    Record counts compare the records written during training (``lsuite-probe`` records of
    saved checkpoints are extra). A run without records of a probe that its config did not ask
    for (a sweep over ``probes``) is not a finding. Failed measurements are named with their
    error; records that could not be read are listed.

    Returns:
        One line per finding, naming the run.
    """
    most: dict[str, int] = {}
    for run in runs:
        for probe, records in run.records.items():
            most[probe] = max(most.get(probe, 0), len(_of_training(records)))
    probe_swept = any(key.split(".")[0].lstrip("+~") == "probes" for key in swept_keys(runs))
    lines = []
    for run in runs:
        if run.status == "unknown":
            lines.append(f"{run.name}: no status.json (killed before it started, or not lsuite)")
        elif run.status == "running":
            lines.append(f"{run.name}: status running (still running, or killed)")
        elif run.status not in FINISHED:
            lines.append(f"{run.name}: {run.status}: {run.error or 'a final loss is not finite'}")
        for probe, count in most.items():
            have = len(_of_training(run.records.get(probe, [])))
            if have == 0 and not _expects(run, probe, probe_swept):
                continue
            if have == 0:
                lines.append(f"{run.name}: no records of probe {probe}")
            elif have < count:
                lines.append(f"{run.name}: partial: {have} of {count} records of probe {probe}")
        for records in run.records.values():
            for record in failures(records):
                error = record.error or {}
                what = f"{error.get('type', 'error')}: {error.get('message', '')}".rstrip(": ")
                lines.append(f"{run.name}: failed measurement {failure_name(record)}: {what}")
        lines.extend(f"{run.name}: unreadable {line}" for line in run.unreadable)
    return lines


def _expects(run: Run, probe: str, probe_swept: bool) -> bool:
    """Whether ``run``'s config asked for ``probe`` (without one: unless probes are swept)."""
    if run.probes is not None:
        return probe in run.probes
    return not probe_swept


def _of_training(records: Sequence[ProbeRecord]) -> list[ProbeRecord]:
    """Return the records written while training (not later by ``lsuite-probe``)."""
    return [r for r in records if r.meta.get("source") != "lsuite-probe"]


def columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Return every key of ``rows`` in the order first seen."""
    found: dict[str, None] = {}
    for row in rows:
        found.update(dict.fromkeys(row))
    return list(found)


def write_csv(path: Path, rows: Sequence[dict[str, Any]], header: Sequence[str] = ()) -> Path:
    """Write ``rows`` as CSV (a header of every column; empty cells for missing values).

    Args:
        path: the file to write.
        rows: the rows.
        header: the columns when there are no rows.

    Returns:
        ``path``.
    """
    buffer = io.StringIO()
    fields = columns(rows) or list(header)
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return write_atomic(path, buffer.getvalue())


def _cell(value: Value) -> Value:
    return "" if value is None else value
