import json
import subprocess
import sys
from pathlib import Path

import torch
from landscape_cases import (
    batches_for,
    mlp,
    one_thread,  # noqa: F401 (autouse fixture)
)

from lsuite.plots.render import render
from lsuite.probes.interpolation import Interpolation
from lsuite.probes.line import Line
from lsuite.probes.plane import Plane
from lsuite.probes.sharpness import Sharpness
from lsuite.results.jsonl import append_record

ROOT = Path(__file__).resolve().parents[2]


def records():
    model = mlp(1)
    train, val = batches_for(model), batches_for(model, 1)
    g = torch.Generator().manual_seed(0)
    results = {
        "interpolation": Interpolation(num_points=5).measure(
            model, train, val_batches=val, start=mlp(0)
        ),
        "line": Line(num_points=5).measure(model, train, generator=g),
        "plane": Plane(num_points=3).measure(model, train, val_batches=val, generator=g),
        "sharpness": Sharpness(rho=[0.01], steps=1, sigma=[0.01], num_samples=2).measure(
            model, train
        ),
    }
    return {
        name: {
            "probe": name,
            "kind": type(r).__name__,
            "step": 12,
            "epoch": 2,
            **json.loads(json.dumps(r.to_dict())),
        }
        for name, r in results.items()
    }


def test_render_chooses_plots_by_kind(tmp_path):
    out = {name: render(record, tmp_path) for name, record in records().items()}
    assert [p.name for p in out["interpolation"]] == ["interpolation_step0000012_interpolation.png"]
    assert [p.name for p in out["line"]] == ["line_step0000012_line.png"]
    assert [p.name for p in out["plane"]] == [
        "plane_step0000012_contour_train.png",
        "plane_step0000012_contour_val.png",
        "plane_step0000012_surface.png",
    ]
    assert out["sharpness"] == []
    assert render({"kind": "Unknown"}, tmp_path) == []
    assert all(p.stat().st_size > 0 for paths in out.values() for p in paths)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_replot_rebuilds_every_plot_from_the_records(tmp_path):
    for name, record in records().items():
        append_record(tmp_path / "probes" / f"{name}.jsonl", record)
    later = {**records()["plane"], "step": 20}
    append_record(tmp_path / "probes" / "plane.jsonl", later)
    command = [sys.executable, str(ROOT / "scripts" / "replot.py"), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert len(names) == 1 + 1 + 3 + 3
    assert "plane_step0000020_surface.png" in names
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0 and sorted(p.name for p in (tmp_path / "plots").iterdir()) == names
    missing = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "replot.py"), str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert missing.returncode == 2
