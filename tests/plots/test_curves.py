import json

import pytest
import torch
from landscape_cases import (
    batches_for,
    mlp,
    one_thread,  # noqa: F401 (autouse fixture)
)

from lsuite.plots.curves import floats, plot_interpolation, plot_line, title
from lsuite.probes.interpolation import Interpolation
from lsuite.probes.line import Line

PNG = b"\x89PNG"


def as_record(result, **meta):
    return {**meta, **json.loads(json.dumps(result.to_dict()))}


@pytest.mark.parametrize("log_scale", [False, True])
def test_interpolation_plot(tmp_path, log_scale):
    model = mlp(1)
    result = Interpolation(num_points=9, alpha_range=(-0.5, 1.5)).measure(
        model, batches_for(model), val_batches=batches_for(model, 1), start=mlp(0)
    )
    record = as_record(result, probe="interpolation", step=4)
    path = plot_interpolation(record, tmp_path / "i.png", log_scale=log_scale)
    assert path.read_bytes()[:4] == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["i.png"]


def test_line_plot_with_markers_and_widths(tmp_path):
    model = mlp(1)
    result = Line(directions=["random", "radial", "init"], num_points=9, delta=0.05).measure(
        model,
        batches_for(model),
        val_batches=batches_for(model, 1),
        init=mlp(0),
        generator=torch.Generator().manual_seed(0),
    )
    record = as_record(result, probe="line", step=4, epoch=2)
    assert plot_line(record, tmp_path / "l.png").read_bytes()[:4] == PNG
    assert plot_line(record, tmp_path / "l.pdf", log_scale=True).read_bytes()[:4] == b"%PDF"


def test_helpers():
    assert floats(["nan", "inf", 1, None])[1:3] == [float("inf"), 1.0]
    assert title({"probe": "plane", "step": 3, "epoch": 1}) == "plane step 3 (epoch 1)"
    assert title({"kind": "LineResult"}) == "LineResult"
