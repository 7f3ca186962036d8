"""Plots chosen by the result's class, from records of schema 2 and 1; scripts/replot.py."""

import importlib.util
import subprocess
import sys
from pathlib import Path

from result_cases import META, flat_record, results, through_json

from lsuite.plots.render import render
from lsuite.results.jsonl import append_record
from lsuite.results.records import make_failure_record, make_record, read_record

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("interpolation", "line", "plane", "sharpness", "hessian_spectrum")


def records():
    """Schema-2 records, as the session writes them, of results with and without plots."""
    return {
        name: through_json(make_record({**META, "probe": name}, results()[name])) for name in NAMES
    }


def test_render_chooses_plots_by_result_class(tmp_path):
    out = {name: render(read_record(record), tmp_path) for name, record in records().items()}
    assert [p.name for p in out["interpolation"]] == ["interpolation_step0000012_interpolation.png"]
    assert [p.name for p in out["line"]] == ["line_step0000012_line.png"]
    assert [p.name for p in out["plane"]] == [
        "plane_step0000012_contour_train.png",
        "plane_step0000012_contour_val.png",
        "plane_step0000012_surface.png",
    ]
    assert [p.name for p in out["hessian_spectrum"]] == [
        "hessian_spectrum_step0000012_spectrum.png"
    ]
    assert out["sharpness"] == []
    assert all(p.stat().st_size > 0 for paths in out.values() for p in paths)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_render_takes_raw_records_and_skips_failures(tmp_path):
    raw = records()["line"]
    assert [p.name for p in render(raw, tmp_path)] == ["line_step0000012_line.png"]
    flat = through_json(flat_record("hessian_spectrum", results()["hessian_spectrum"], step=3))
    assert [p.name for p in render(flat, tmp_path)] == ["hessian_spectrum_step0000003_spectrum.png"]
    failed = make_failure_record({**META, "probe": "plane"}, RuntimeError("boom"))
    assert render(failed, tmp_path / "failed") == []
    assert not (tmp_path / "failed").exists()


def test_replot_rebuilds_every_plot_from_the_records(tmp_path):
    for name, record in records().items():
        append_record(tmp_path / "probes" / f"{name}.jsonl", record)
    later = make_record({**META, "probe": "plane", "step": 20}, results()["plane"])
    append_record(tmp_path / "probes" / "plane.jsonl", later)
    failed = make_failure_record({**META, "probe": "plane", "step": 30}, ValueError("bad"))
    append_record(tmp_path / "probes" / "plane.jsonl", failed)
    old = flat_record("old_line", results()["line"], step=5)  # a record of schema 1
    append_record(tmp_path / "probes" / "old_line.jsonl", through_json(old))
    command = [sys.executable, str(ROOT / "scripts" / "replot.py"), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert len(names) == 1 + 1 + 3 + 3 + 1 + 1
    assert "plane_step0000020_surface.png" in names
    assert "old_line_step0000005_line.png" in names
    replot = load_replot()  # in process: each start of the script costs seconds
    assert replot.main([str(tmp_path), "--only", "old_line"]) == 0  # replaced in place
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == names
    assert replot.main([str(tmp_path / "nothing")]) == 2


def load_replot():
    spec = importlib.util.spec_from_file_location("replot", ROOT / "scripts" / "replot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
