"""Records {schema, meta, result}: every result class round-trips; schema-1 records still read."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from result_cases import META, assert_same_result, results, through_json

from lsuite.errors import ConfigError
from lsuite.probes.base import ProbeResult
from lsuite.probes.hessian_spectrum import HessianSpectrumResult
from lsuite.probes.hessian_trace import HessianTraceResult
from lsuite.probes.result_registry import known_kinds, result_class
from lsuite.results.jsonl import append_record, read_probe_records, read_records
from lsuite.results.records import (
    SCHEMA,
    TRACEBACK_LINES,
    make_failure_record,
    make_record,
    read_record,
)

FIXTURE = Path(__file__).parent / "fixtures" / "schema1_run" / "probes"
NAMES = sorted(results())
# The probes that existed before schema 2 wrote flat records; the fixture holds one file each.
SCHEMA_1_NAMES = sorted(p.stem for p in FIXTURE.glob("*.jsonl"))


def test_every_result_class_has_a_case():
    ours = [k for k in known_kinds() if result_class(k).__module__.startswith("lsuite.")]
    assert sorted(type(r).__name__ for r in results().values()) == ours


@pytest.mark.parametrize("name", NAMES)
def test_from_dict_rebuilds_every_result(name):
    result = results()[name]
    back = type(result).from_dict(through_json(result.to_dict()))
    assert_same_result(back, result)
    assert result_class(type(result).__name__) is type(result)


@pytest.mark.parametrize("name", NAMES)
def test_record_keeps_meta_and_result_apart(name):
    result = results()[name]
    record = through_json(make_record({**META, "probe": name}, result))
    assert record["schema"] == SCHEMA == 2
    assert record["meta"] == {**META, "probe": name, "kind": type(result).__name__}
    assert record["result"] == through_json(result.to_dict())
    assert record["scalars"] == through_json(
        {k: v if math.isfinite(v) else str(v) for k, v in result.scalars().items()}
    )
    read = read_record(record)
    assert read.meta == record["meta"] and read.error is None and not read.failed
    assert (read.probe, read.step) == (name, 12)
    assert_same_result(read.result, result)


def test_spectrum_weights_no_longer_collide_with_the_weights_label():
    """Issue 10 item 2: the quadrature weights overwrote the record's ``weights`` label."""
    result = results()["hessian_spectrum"]
    record = read_record(through_json(make_record({**META, "probe": "s"}, result)))
    assert record.meta["weights"] == "current"
    assert record.result.weights == result.weights and isinstance(record.result.weights[0], list)


def test_the_schema_1_fixture_covers_the_probes_of_that_version():
    assert len(SCHEMA_1_NAMES) == 7 and set(SCHEMA_1_NAMES) <= set(NAMES)


@pytest.mark.parametrize("name", SCHEMA_1_NAMES)
def test_schema_1_records_of_earlier_versions_are_read(name):
    """Fixture: the flat records lsuite wrote before schema 2 (``probes/<name>.jsonl``)."""
    path = FIXTURE / f"{name}.jsonl"
    records = read_probe_records(path)
    assert [(r.step, r.meta["when"]) for r in records] == [(12, "epoch"), (24, "fit_end")]
    for raw, record in zip(read_records(path), records, strict=True):
        assert type(record.result).__name__ == raw["kind"] == record.meta["kind"]
        assert record.meta["probe"] == name and record.meta["world_size"] == 1
        assert "scalars" not in record.meta
        # Every field the old line has comes back as written (fields added since take defaults).
        written = through_json(record.result.to_dict())
        fields = {f.name for f in dataclasses.fields(record.result)}
        assert {k: v for k, v in raw.items() if k in fields} == {
            k: written[k] for k in raw if k in fields
        }
    if name == "hessian_spectrum":  # the collided key belongs to the result, not to meta
        assert "weights" not in records[0].meta
        assert isinstance(records[0].result.weights[0], list)
    else:
        assert records[0].meta["weights"] == "current"


def test_failure_record():
    def fail():
        raise RuntimeError("probe blew up")

    try:
        fail()
    except RuntimeError as error:
        raw = through_json(make_failure_record({**META, "probe": "p", "kind": "X"}, error))
    assert raw["schema"] == 2 and raw["result"] is None
    assert raw["error"]["type"] == "RuntimeError"
    assert raw["error"]["message"] == "probe blew up"
    lines = raw["error"]["traceback"].splitlines()
    assert lines[-1] == "RuntimeError: probe blew up" and 1 < len(lines) <= TRACEBACK_LINES
    record = read_record(raw)
    assert record.failed and record.result is None and record.error == raw["error"]
    assert record.meta["probe"] == "p"


def test_records_through_a_file(tmp_path):
    path = tmp_path / "probes" / "t.jsonl"
    trace = results()["hessian_trace"]
    append_record(
        path, make_record({**META, "probe": "t", "checkpoint": tmp_path / "a.ckpt"}, trace)
    )
    append_record(path, make_failure_record({**META, "probe": "t", "step": 13}, KeyError("k")))
    first, second = read_probe_records(path)
    assert first.meta["checkpoint"] == str(tmp_path / "a.ckpt")  # paths are written as text
    assert_same_result(first.result, trace)
    assert second.failed and second.step == 13 and second.error["type"] == "KeyError"
    assert read_probe_records(tmp_path / "missing.jsonl") == []


def test_bad_records_are_one_clear_error():
    trace = results()["hessian_trace"]
    with pytest.raises(ConfigError, match=r"kind: got 'Nope'; expected .*HessianTraceResult"):
        read_record({"schema": 2, "meta": {"kind": "Nope"}, "result": {}})
    with pytest.raises(ConfigError, match=r"kind: got 'Nope'; expected .*PlaneResult"):
        read_record({"probe": "p", "kind": "Nope", "step": 1})
    with pytest.raises(ConfigError, match=r"schema: got 3; this lsuite reads records of schema 1"):
        read_record({"schema": 3, "meta": {}, "result": None})
    with pytest.raises(ConfigError, match=r"HessianTraceResult: got fields .*; missing method"):
        read_record({"probe": "p", "kind": "HessianTraceResult", "trace": 1.0, "stderr": 0.1,
                     "num_matvecs": 2, "converged": True})  # fmt: skip
    with pytest.raises(ConfigError, match=r"meta.kind: got 'PlaneResult'; expected 'Hessian"):
        make_record({"kind": "PlaneResult"}, trace)
    with pytest.raises(ConfigError, match="result: got dict; expected a ProbeResult"):
        make_record({}, trace.to_dict())


@dataclasses.dataclass(frozen=True)
class _Inner:
    value: float
    names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _CodecCaseResult(ProbeResult):
    """A result with every kind of field a probe may grow (registered by its class name)."""

    matrix: torch.Tensor
    counts: np.ndarray
    inner: _Inner
    nested: dict[str, list[float | None]]
    pair: tuple[int, float]
    best: float | None
    extra: list[list[float]] = dataclasses.field(default_factory=list)
    cache: object = dataclasses.field(default=None, compare=False, metadata={"json": False})


def test_from_dict_handles_tensors_arrays_nested_dataclasses_and_non_finite_floats():
    result = _CodecCaseResult(
        matrix=torch.tensor([[1.0, math.inf], [-math.inf, 0.5]], dtype=torch.float64),
        counts=np.array([1, 2, 3]),
        inner=_Inner(value=math.nan, names=("a", "b")),
        nested={"train": [1.0, None, math.nan]},
        pair=(2, -math.inf),
        best=math.inf,
        cache=object(),
    )
    data = through_json(result.to_dict())
    assert "cache" not in data and data["best"] == "inf" and data["inner"]["value"] == "nan"
    back = _CodecCaseResult.from_dict(data)
    assert back.matrix.dtype == torch.float64 and torch.equal(back.matrix, result.matrix)
    assert back.counts.dtype == np.int64 and np.array_equal(back.counts, result.counts)
    assert math.isnan(back.inner.value) and back.inner.names == ("a", "b")
    assert back.nested["train"][:2] == [1.0, None] and math.isnan(back.nested["train"][2])
    assert back.pair == (2, -math.inf) and back.best == math.inf and back.extra == []
    assert back.cache is None
    assert result_class("_CodecCaseResult") is _CodecCaseResult


def test_result_class_lists_the_known_kinds():
    assert result_class("HessianTraceResult") is HessianTraceResult
    with pytest.raises(ConfigError) as info:
        result_class("HessianTrace")
    message = str(info.value)
    assert message.startswith("kind: got 'HessianTrace'; expected a result class, one of ")
    for kind in ("HessianSpectrumResult", "HessianTraceResult", "PlaneResult", "SharpnessResult"):
        assert kind in message
    assert issubclass(HessianSpectrumResult, ProbeResult)
