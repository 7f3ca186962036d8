import dataclasses

import numpy as np
import pytest
import torch
from landscape_cases import (
    batches_for,
    mlp,
    one_thread,  # noqa: F401 (autouse fixture)
)
from result_cases import through_json

from lsuite.errors import ConfigError
from lsuite.plots.landscape import grid, plot_contour, plot_surface
from lsuite.probes.plane import Plane, PlaneResult

PNG = b"\x89PNG"


META = {"probe": "plane", "step": 3, "epoch": 1}


@pytest.fixture(scope="module")
def record():
    """A plane result as read back from its record."""
    model = mlp()
    g = torch.Generator().manual_seed(0)
    result = Plane(num_points=5, span=(-2.0, 2.0)).measure(
        model, batches_for(model), val_batches=batches_for(model, 1), generator=g
    )
    return PlaneResult.from_dict(through_json(result.to_dict()))


@pytest.mark.parametrize("log_scale", [None, True, False])
@pytest.mark.parametrize("split", ["train", "val"])
def test_contour_is_written_atomically(tmp_path, record, split, log_scale):
    path = tmp_path / "plots" / "c.png"
    assert plot_contour(record, path, meta=META, split=split, log_scale=log_scale) == path
    assert path.read_bytes()[:4] == PNG
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.png"]  # no temporary left


def test_surface_and_accuracy_contour(tmp_path, record):
    assert plot_surface(record, tmp_path / "s.png").read_bytes()[:4] == PNG
    assert plot_contour(record, tmp_path / "a.png", metric="accuracy").read_bytes()[:4] == PNG


def test_non_finite_values_and_marks_are_drawn(tmp_path, record):
    raw = through_json(record.to_dict())
    raw["loss"]["train"][0][0] = "inf"
    raw["loss"]["train"][4][4] = "nan"
    raw["trajectory"] = [[-0.8, 0.1], [-0.4, 0.3]]
    raw["markers"] = {"init": [-0.8, 0.1], "center": [0.0, 0.0]}
    broken = PlaneResult.from_dict(raw)
    assert plot_contour(broken, tmp_path / "b.png").read_bytes()[:4] == PNG
    assert plot_surface(broken, tmp_path / "b3.png", log_scale=True).read_bytes()[:4] == PNG
    _, _, z, split = grid(broken, None, "loss")
    assert split == "train" and z.shape == (5, 5) and np.isinf(z[0, 0]) and np.isnan(z[4, 4])


def test_grid_orientation_and_errors(record):
    _, _, z, _ = grid(record, "train", "loss")
    assert z[0, 4] == pytest.approx(record.loss["train"][0][4])  # (x[0], y[4])
    with pytest.raises(ConfigError, match="split: got 'test'"):
        grid(record, "test", "loss")
    with pytest.raises(ConfigError, match="no accuracy values"):
        grid(dataclasses.replace(record, accuracy=None), None, "accuracy")
