"""Probe records: the versioned ``{schema, meta, result}`` dict of one measurement, both ways.

A record keeps where a measurement came from (``meta``) apart from what it measured
(``result``, the probe's ``to_dict()``), so no field name of any probe can collide with the
provenance keys. Schema 1 (records of earlier versions: one flat dict) is still read.

``meta`` keys: ``probe`` (name), ``kind`` (result class name), ``step``, ``epoch``, ``when``
(``"step"``, ``"epoch"``, ``"fit_end"``, ``"checkpoint"``), ``weights`` (``"current"`` or
``"swa_average"``), ``seconds``, ``world_size``, ``source`` (``"lsuite-train"``,
``"callback"``, ``"lsuite-probe"``, ``"python"``) and, for ``lsuite-probe``, ``checkpoint``.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from lsuite.errors import ConfigError
from lsuite.probes.base import ProbeResult, to_jsonable
from lsuite.probes.result_registry import result_class

SCHEMA = 2
"""The record schema written by `make_record` and `make_failure_record`."""

META_KEYS = (
    "probe",
    "kind",
    "step",
    "epoch",
    "when",
    "weights",
    "seconds",
    "world_size",
    "source",
    "checkpoint",
)
"""The provenance keys of ``meta`` (others are allowed and kept)."""

TRACEBACK_LINES = 20
"""Lines of the traceback kept in a failure record (its end, where the error was raised)."""


@dataclass(frozen=True)
class ProbeRecord:
    """One measurement read back: where it came from, and the typed result or the error.

    Attributes:
        meta: provenance (``probe``, ``kind``, ``step``, ... see the module docstring).
        result: the probe's typed result; None for a failed measurement.
        error: ``{"type", "message", "traceback"}`` of a failed measurement, else None.
    """

    meta: Mapping[str, Any]
    result: ProbeResult | None
    error: Mapping[str, Any] | None = None

    @property
    def probe(self) -> str:
        """The probe's name (``meta["probe"]``; ``"probe"`` when the record has none)."""
        return str(self.meta.get("probe", "probe"))

    @property
    def step(self) -> int | None:
        """The trainer's global step of the measurement, or None."""
        step = self.meta.get("step")
        return None if step is None else int(step)

    @property
    def failed(self) -> bool:
        """Whether the measurement failed (no result)."""
        return self.result is None


def make_record(meta: Mapping[str, Any], result: ProbeResult) -> dict[str, Any]:
    """Return the JSON-safe record of one measurement.

    Args:
        meta: provenance (see the module docstring); ``kind`` is set to the result's class name
            when missing. Paths become strings; non-finite floats become strings.
        result: the probe's result.

    Returns:
        ``{"schema": 2, "meta": {...}, "result": result.to_dict(), "scalars": result.scalars()}``.

    Raises:
        ConfigError: when ``result`` is not a `ProbeResult`, or ``meta["kind"]`` names another
            class.
    """
    if not isinstance(result, ProbeResult):
        raise ConfigError(f"result: got {type(result).__name__}; expected a ProbeResult")
    kind = type(result).__name__
    out = _meta(meta)
    if out.setdefault("kind", kind) != kind:
        raise ConfigError(f"meta.kind: got {out['kind']!r}; expected {kind!r} (the result's class)")
    return {
        "schema": SCHEMA,
        "meta": out,
        "result": result.to_dict(),
        "scalars": to_jsonable(result.scalars()),
    }


def make_failure_record(meta: Mapping[str, Any], error: BaseException) -> dict[str, Any]:
    """Return the JSON-safe record of a measurement that raised ``error``.

    Args:
        meta: provenance, as for `make_record` (``kind`` may be missing).
        error: the exception the probe raised.

    Returns:
        ``{"schema": 2, "meta": {...}, "result": None, "error": {"type", "message",
        "traceback"}}`` with the last `TRACEBACK_LINES` lines of the traceback.
    """
    lines = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return {
        "schema": SCHEMA,
        "meta": _meta(meta),
        "result": None,
        "error": {
            "type": type(error).__name__,
            "message": str(error),
            "traceback": "\n".join(lines.rstrip("\n").splitlines()[-TRACEBACK_LINES:]),
        },
    }


def read_record(raw: Mapping[str, Any]) -> ProbeRecord:
    """Return the record ``raw`` (one parsed JSON line) with its result rebuilt by class.

    Schema 2 records are ``{schema, meta, result}``. Schema 1 records (no ``schema`` key) are
    flat: provenance and result fields side by side, the result's fields written last, so a
    result field that shares a name with a provenance key (``HessianSpectrumResult.weights``)
    holds the result's value; such a key belongs to the result and is not in ``meta``.

    Args:
        raw: the record as parsed from JSON.

    Returns:
        The record; ``result`` is None for a failure record.

    Raises:
        ConfigError: for a schema this version cannot read, an unknown ``kind`` (the message
            lists the known ones) or a result that lacks a field.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"record: got {type(raw).__name__}; expected a JSON object")
    schema = raw.get("schema", 1)
    if schema == 1:
        return _read_flat(raw)
    if schema != SCHEMA or not isinstance(raw.get("meta"), Mapping):
        raise ConfigError(
            f"schema: got {schema!r}; this lsuite reads records of schema 1 and {SCHEMA}"
        )
    meta = dict(raw["meta"])
    error = raw.get("error")
    if raw.get("result") is None:
        return ProbeRecord(meta=meta, result=None, error=dict(error or {"type": "unknown"}))
    cls = result_class(str(meta.get("kind", "")))
    return ProbeRecord(meta=meta, result=cls.from_dict(raw["result"]), error=None)


def _read_flat(raw: Mapping[str, Any]) -> ProbeRecord:
    cls = result_class(str(raw.get("kind", "")))
    fields = {f.name for f in dataclasses.fields(cls)}
    meta = {k: v for k, v in raw.items() if k not in fields and k != "scalars"}
    values = {k: v for k, v in raw.items() if k in fields}
    return ProbeRecord(meta=meta, result=cls.from_dict(values), error=None)


def _meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(meta, Mapping):
        raise ConfigError(f"meta: got {type(meta).__name__}; expected a mapping of provenance")
    return {str(k): to_jsonable(_plain(v)) for k, v in meta.items()}


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, PurePath) else value
