import pytest
import torch
from landscape_cases import (
    batches_for,
    mlp,
    one_thread,  # noqa: F401 (autouse fixture)
)
from result_cases import results, through_json

from lsuite.plots.curves import floats, plot_interpolation, plot_line, title
from lsuite.probes.interpolation import Interpolation
from lsuite.probes.line import Line

PNG = b"\x89PNG"


@pytest.mark.parametrize("log_scale", [False, True])
def test_interpolation_plot(tmp_path, log_scale):
    model = mlp(1)
    result = Interpolation(num_points=9, alpha_range=(-0.5, 1.5)).measure(
        model, batches_for(model), val_batches=batches_for(model, 1), start=mlp(0)
    )
    result = type(result).from_dict(through_json(result.to_dict()))  # as read from a record
    meta = {"probe": "interpolation", "step": 4}
    path = plot_interpolation(result, tmp_path / "i.png", meta=meta, log_scale=log_scale)
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
    meta = {"probe": "line", "step": 4, "epoch": 2}
    assert plot_line(result, tmp_path / "l.png", meta=meta).read_bytes()[:4] == PNG
    pdf = plot_line(result, tmp_path / "l.pdf", meta=meta, log_scale=True)
    assert pdf.read_bytes()[:4] == b"%PDF"


def test_helpers():
    assert floats(["nan", "inf", 1, None])[1:3] == [float("inf"), 1.0]
    meta = {"probe": "plane", "step": 3, "epoch": 1}
    assert title(object(), meta) == "plane step 3 (epoch 1)"
    assert title(results()["line"], None) == "LineResult"
