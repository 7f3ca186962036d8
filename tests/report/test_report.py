"""lsuite-report on a hand-made sweep: tidy tables, figures, and runs that are missing data."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from lsuite.probes.hessian_eigenvalues import HessianEigenvaluesResult
from lsuite.probes.hessian_trace import HessianTraceResult
from lsuite.report.cli import main, report
from lsuite.report.runs import find_runs, measurements, parse_value, read_run
from lsuite.results.jsonl import append_record, read_probe_records
from lsuite.results.records import make_failure_record, make_record, read_record

SCHEMA_1_RUN = Path(__file__).parents[1] / "results" / "fixtures" / "schema1_run"


def make_run(sweep, num, lr, width, status, steps, error=None, hydra=True):
    """Write a job directory as lsuite-train leaves it; ``steps`` of probe records."""
    overrides = [f"optim.lr={lr}", f"model.width={width}", "trainer.max_epochs=3"]
    directory = sweep / f"{num}_model.width={width},optim.lr={lr}"
    directory.mkdir(parents=True)
    if hydra:
        (directory / ".hydra").mkdir()
        (directory / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if status is not None:
        content = {"status": status, "job": {"num": num, "overrides": overrides}}
        if status == "completed":
            content["metrics"] = {"test/acc": 0.5 + lr, "test/loss": 1.0 / width}
        if error:
            content["error"] = error
        (directory / "status.json").write_text(json.dumps(content))
    for step in steps:
        meta = {"step": step, "epoch": step // 10, "when": "epoch", "weights": "current"}
        meta |= {"seconds": 0.1, "world_size": 1, "source": "lsuite-train"}
        trace = HessianTraceResult(lr * width * step, 0.1, 8, "hutchpp", converged=True)
        append_record(directory / "probes" / "hessian_trace.jsonl", make_record(
            {**meta, "probe": "hessian_trace"}, trace))  # fmt: skip
        eigs = HessianEigenvaluesResult([lr * step, 0.5], None, [1e-9, 1e-9], None, 20, True)
        append_record(directory / "probes" / "hessian_eigs.jsonl", make_record(
            {**meta, "probe": "hessian_eigs"}, eigs))  # fmt: skip
    return directory


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("multirun") / "2026-01-01_12-00-00"
    make_run(root, 0, 0.01, 32, "completed", [10, 20, 30])
    make_run(root, 1, 0.01, 128, "completed", [10, 20, 30])
    make_run(root, 2, 0.1, 32, "completed", [10, 20, 30])
    make_run(root, 3, 0.1, 128, "failed", [10], error="RuntimeError: planted failure")
    make_run(root, 4, 1.0, 32, "diverged", [10, 20], error="TrainingDiverged: training diverged")
    make_run(root, 5, 1.0, 128, None, [])  # killed before status.json
    make_run(root, 6, 0.5, 64, "running", [10, 20])  # still running, or killed
    failed = make_failure_record(
        {"probe": "hessian_trace", "step": 30, "epoch": 3, "when": "epoch", "source": "callback"},
        RuntimeError("planted probe error"),
    )
    append_record(next(root.glob("6_*")) / "probes" / "hessian_trace.jsonl", failed)
    # lsuite-probe measured a saved checkpoint of job 0 later, with more matvecs.
    later = HessianTraceResult(123.0, 0.01, 64, "hutchpp", converged=True)
    meta = {"probe": "hessian_trace", "step": 20, "epoch": 1, "when": "checkpoint"}
    meta |= {"source": "lsuite-probe", "checkpoint": "checkpoints/epoch=1-step=20.ckpt"}
    append_record(
        next(root.glob("0_*")) / "probes" / "hessian_trace.jsonl", make_record(meta, later)
    )
    old = make_run(root, 7, 0.2, 64, None, [])  # written by an earlier version: schema 1
    shutil.copy(SCHEMA_1_RUN / "status.json", old / "status.json")
    (old / "probes").mkdir()
    shutil.copy(SCHEMA_1_RUN / "probes" / "hessian_trace.jsonl", old / "probes")
    (root / ".submitit").mkdir()
    (root / "multirun.yaml").write_text("{}")
    return root


@pytest.fixture(scope="module")
def result(sweep):
    return report(sweep)


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_report_tables(result):
    runs = read_csv(result.directory / "runs.csv")
    assert [r["job"] for r in runs] == ["0", "1", "2", "3", "4", "5", "6", "7"]
    assert [r["status"] for r in runs] == [
        "completed",
        "completed",
        "completed",
        "failed",
        "diverged",
        "unknown",
        "running",
        "completed",
    ]
    assert runs[2]["optim.lr"] == "0.1"
    assert runs[2]["model.width"] == "32"
    assert float(runs[2]["hessian_trace/trace"]) == pytest.approx(0.1 * 32 * 30)
    # Named as the result's scalars() names them for loggers.
    assert float(runs[2]["hessian_eigs/top_eigenvalue"]) == pytest.approx(0.1 * 30)
    assert float(runs[2]["hessian_eigs/eigenvalue_1"]) == pytest.approx(0.5)
    assert float(runs[0]["test/acc"]) == pytest.approx(0.51)
    # The final record of training, not the later lsuite-probe measurement of a checkpoint.
    assert float(runs[0]["hessian_trace/trace"]) == pytest.approx(0.01 * 32 * 30)
    assert runs[3]["error"] == "RuntimeError: planted failure"
    assert runs[6]["failed_measurements"] == "hessian_trace@step30"
    assert runs[0]["failed_measurements"] == ""
    old = read_probe_records(SCHEMA_1_RUN / "probes" / "hessian_trace.jsonl")[-1].result
    assert float(runs[7]["hessian_trace/trace"]) == pytest.approx(old.trace)
    tidy = read_csv(result.directory / "measurements.csv")
    # Per record: trace, stderr, num_matvecs + num_matvecs, top_eigenvalue, eigenvalue_0,
    # eigenvalue_1 in 3 + 3 + 3 + 1 + 2 + 2 steps; job 0's lsuite-probe record (3); job 6's
    # failed measurement (1); job 7's two schema-1 trace records (with per-layer traces).
    assert len(tidy) == (3 + 4) * (3 + 3 + 3 + 1 + 2 + 2) + 3 + 1 + 2 * len(old.scalars())
    first = tidy[0]
    assert set(first) >= {"run", "status", "optim.lr", "model.width", "probe", "step", "field"}
    assert set(first) >= {"source", "checkpoint", "weights", "when"}
    probed = [r for r in tidy if r["source"] == "lsuite-probe"]
    assert {r["field"]: float(r["value"]) for r in probed}["trace"] == 123.0
    assert {r["checkpoint"] for r in probed} == {"checkpoints/epoch=1-step=20.ckpt"}
    assert {(r["run"][0], r["when"], r["step"]) for r in probed} == {("0", "checkpoint", "20")}
    [failed] = [r for r in tidy if r["field"] == "failed"]
    assert (failed["run"][0], failed["probe"], failed["step"], failed["value"]) == (
        "6",
        "hessian_trace",
        "30",
        "1.0",
    )
    assert {r["source"] for r in tidy if r["run"].startswith("7_")} == {""}
    assert {r["field"] for r in tidy if r["probe"] == "hessian_eigs"} == {
        "num_matvecs",
        "top_eigenvalue",
        "eigenvalue_0",
        "eigenvalue_1",
    }


def test_report_notes_missing_partial_and_failed_runs(result):
    notes = result.notes
    text = "\n".join(notes)
    assert "3_model.width=128,optim.lr=0.1: failed: RuntimeError: planted failure" in text
    assert "3_model.width=128,optim.lr=0.1: partial: 1 of 3 records of probe hessian_trace" in text
    assert "4_model.width=32,optim.lr=1.0: diverged: TrainingDiverged" in text
    assert "5_model.width=128,optim.lr=1.0: no status.json" in text
    assert "5_model.width=128,optim.lr=1.0: no records of probe hessian_eigs" in text
    assert "6_model.width=64,optim.lr=0.5: status running (still running, or killed)" in text
    assert (
        "6_model.width=64,optim.lr=0.5: failed measurement hessian_trace@step30: "
        "RuntimeError: planted probe error" in text
    )
    assert "7_model.width=64,optim.lr=0.2: partial: 2 of 3 records of probe hessian_trace" in text
    assert not any(note.startswith(("0_", "1_", "2_")) for note in notes)


def test_report_figures_and_page(result):
    names = {p.name for p in result.files}
    for name in (
        "final_test.acc.png",
        "final_hessian_trace.trace.png",
        "final_hessian_eigs.top_eigenvalue.png",
        "training_hessian_trace.trace.png",
        "training_hessian_eigs.top_eigenvalue.png",
        "README.md",
        "index.html",
    ):
        assert name in names
        assert (result.directory / name).stat().st_size > 0
    # Estimator details, constants (eigenvalue_1) and repeats (eigenvalue_0) are not plotted.
    for left_out in ("stderr", "num_matvecs", "eigenvalue_0", "eigenvalue_1"):
        assert not any(left_out in n for n in names), left_out
    page = (result.directory / "README.md").read_text()
    assert "8 runs: 4 completed, 1 diverged, 1 failed, 1 running, 1 unknown" in page
    assert (
        "Swept: `optim.lr` (0.01, 0.1, 0.2, 0.5, 1.0) (x axis), `model.width` (32, 64, 128)."
        in page
    )
    assert "Same in every run: `trainer.max_epochs=3`." in page
    assert "![final_hessian_trace.trace.png](final_hessian_trace.trace.png)" in page
    assert "planted failure" in (result.directory / "index.html").read_text()


def test_cli(tmp_path, capsys):
    make_run(tmp_path / "sweep", 0, 0.1, 32, "completed", [])
    make_run(tmp_path / "sweep", 1, 0.2, 32, None, [])
    main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "lsuite-report: 2 runs" in out
    assert "note: 1_model.width=32,optim.lr=0.2: no status.json" in out
    assert (tmp_path / "out" / "README.md").is_file()
    assert (tmp_path / "out" / "final_test.acc.png").is_file()


def test_cli_without_runs_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path)])
    assert info.value.code == 2
    assert "found no runs" in capsys.readouterr().err


def test_single_run_directory_and_config_yaml_overrides(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"overrides": ["l2=0.001"], "seed": 0}))
    [found] = find_runs(run)
    assert found.hyperparameters == {"l2": 0.001}
    assert found.status == "unknown"


def test_measurements_and_values():
    trace = HessianTraceResult(1.5, float("nan"), 4, "hutchinson", False, per_layer={"w": 0.5})
    record = read_record(json.loads(json.dumps(make_record({"probe": "p"}, trace))))
    got = measurements(record)
    assert got.keys() == {"trace", "stderr", "num_matvecs", "per_layer/w"}
    assert got["stderr"] != got["stderr"]  # NaN
    failed = read_record(make_failure_record({"probe": "p"}, ValueError("v")))
    assert measurements(failed) == {}
    assert parse_value("0.1") == 0.1
    assert parse_value("[a,b]") == "[a,b]"
    assert parse_value("sgd") == "sgd"


def test_schema_1_run_of_an_earlier_version(tmp_path):
    """Every probe's flat records (before schema 2) are read: tables, figures and page."""
    run = tmp_path / "run"
    shutil.copytree(SCHEMA_1_RUN, run)
    with (run / "probes" / "plane.jsonl").open("a") as f:
        f.write('{"probe": "plane", "kind": "FutureResult", "step": 36}\n')
    done = report(run)
    found = read_run(run)
    names = sorted(p.stem for p in (SCHEMA_1_RUN / "probes").glob("*.jsonl"))
    assert len(names) == 7
    assert {name: len(records) for name, records in found.records.items()} == {
        name: 2 for name in names
    }
    [unreadable] = found.unreadable
    assert unreadable.startswith("probes/plane.jsonl: record 3: kind: got 'FutureResult'")
    assert any("unreadable probes/plane.jsonl: record 3" in note for note in done.notes)
    [row] = read_csv(done.directory / "runs.csv")
    last = {name: found.records[name][-1].result for name in names}
    assert float(row["hessian_spectrum/trace"]) == pytest.approx(last["hessian_spectrum"].trace)
    assert float(row["sharpness/loss"]) == pytest.approx(last["sharpness"].loss)
    tidy = read_csv(done.directory / "measurements.csv")
    assert {r["probe"] for r in tidy} == {n for n, r in last.items() if r.scalars()}
    # The spectrum's quadrature weights had overwritten the weights label: no label, no list.
    assert {r["weights"] for r in tidy if r["probe"] == "hessian_spectrum"} == {""}
    assert {r["weights"] for r in tidy if r["probe"] == "hessian_trace"} == {"current"}
