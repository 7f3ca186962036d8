"""lsuite-report on a hand-made sweep: tidy tables, figures, and runs that are missing data."""

import csv
import json

import pytest
import yaml

from lsuite.report.cli import main, report
from lsuite.report.runs import find_runs, measurements, parse_value
from lsuite.results.jsonl import append_record


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
        base = {"step": step, "epoch": step // 10, "when": "epoch", "weights": "current"}
        trace = {"probe": "hessian_trace", "kind": "HessianTraceResult", "seconds": 0.1}
        trace |= {"trace": lr * width * step, "stderr": 0.1, "num_matvecs": 8, "converged": True}
        append_record(directory / "probes" / "hessian_trace.jsonl", {**base, **trace})
        eigs = {"probe": "hessian_eigs", "kind": "HessianEigenvaluesResult", "smallest": None}
        eigs |= {"eigenvalues": [lr * step, 0.5], "residuals": [1e-9, 1e-9], "converged": True}
        eigs |= {"smallest_residuals": None, "num_matvecs": 20}
        append_record(directory / "probes" / "hessian_eigs.jsonl", {**base, **eigs})
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
    assert [r["job"] for r in runs] == ["0", "1", "2", "3", "4", "5", "6"]
    assert [r["status"] for r in runs] == [
        "completed",
        "completed",
        "completed",
        "failed",
        "diverged",
        "unknown",
        "running",
    ]
    assert runs[2]["optim.lr"] == "0.1"
    assert runs[2]["model.width"] == "32"
    assert float(runs[2]["hessian_trace/trace"]) == pytest.approx(0.1 * 32 * 30)
    # Named as the result's scalars() names them for loggers.
    assert float(runs[2]["hessian_eigs/top_eigenvalue"]) == pytest.approx(0.1 * 30)
    assert float(runs[2]["hessian_eigs/eigenvalue_1"]) == pytest.approx(0.5)
    assert float(runs[0]["test/acc"]) == pytest.approx(0.51)
    assert runs[3]["error"] == "RuntimeError: planted failure"
    tidy = read_csv(result.directory / "measurements.csv")
    # Per record: trace, stderr, num_matvecs (an incomplete HessianTraceResult: its numbers)
    # + num_matvecs, top_eigenvalue, eigenvalue_0, eigenvalue_1; 3 + 3 + 3 + 1 + 2 + 2 records.
    assert len(tidy) == (3 + 4) * (3 + 3 + 3 + 1 + 2 + 2)
    first = tidy[0]
    assert set(first) >= {"run", "status", "optim.lr", "model.width", "probe", "step", "field"}
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
    assert not any(note.startswith("0_") for note in notes)


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
    assert "7 runs: 3 completed, 1 diverged, 1 failed, 1 running, 1 unknown" in page
    assert "Swept: `optim.lr`, `model.width`." in page
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
    record = {"probe": "p", "step": 3, "trace": 1.5, "flag": True, "per_layer": {"w": 0.5}}
    record |= {"long": list(range(20)), "bad": "nan", "text": "hutchpp"}
    got = measurements(record)
    assert got.keys() == {"trace", "per_layer/w", "bad"}
    logged = {"probe": "p", "trace": 1.5, "scalars": {"trace": 1.5, "rho_0.1": "nan"}}
    assert measurements(logged).keys() == {"trace", "rho_0.1"}
    assert parse_value("0.1") == 0.1
    assert parse_value("[a,b]") == "[a,b]"
    assert parse_value("sgd") == "sgd"
