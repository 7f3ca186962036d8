import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from landscape_cases import (
    Quadratic,
    assert_same_fingerprint,
    batches_for,
    cnn_bn,
    fingerprint,
    mlp,
    named,
    one_thread,  # noqa: F401 (autouse fixture)
    plain_loop,
    quadratic_batches,
    quadratic_loss,
    with_grads,
)
from omegaconf import OmegaConf

from lsuite.anchors import WeightHistory, resolve_points
from lsuite.errors import ConfigError
from lsuite.functional.params import norm
from lsuite.probes.data_source import DataSource
from lsuite.probes.directions import gradient_direction, random_direction, rescale
from lsuite.probes.line import Line, width
from lsuite.probes.point import snapshot

CONF = Path(__file__).resolve().parents[2] / "conf" / "probes" / "line.yaml"


def along(params, direction, t):
    return {k: params[k] + t * direction[k] for k in params}


@pytest.mark.parametrize("batching", ["loop", "vmap"])
@pytest.mark.parametrize("make", [mlp, cnn_bn], ids=["mlp", "cnn_bn"])
def test_lines_equal_a_plain_loop(make, batching):
    model, init = make(1), make(0)
    train, val = batches_for(model, 0), batches_for(model, 1, sizes=(7,))
    probe = Line(
        directions=["random", "radial", "init", "gradient"], num_points=7, batching=batching
    )
    result = probe.measure(
        model, train, val_batches=val, init=init, generator=torch.Generator().manual_seed(4)
    )
    params = named(model)
    point = snapshot(model, F.cross_entropy)
    expected = {
        "random": random_direction(params, torch.Generator().manual_seed(4)),
        "radial": params,
        "init": {k: params[k] - v for k, v in named(init).items()},
        "gradient": gradient_direction(point, DataSource(train)),
    }
    for name, direction in expected.items():
        d = rescale(direction, params, "model")
        assert result.direction_norm[name] == pytest.approx(float(norm(params)), rel=1e-6)
        for split, batches in (("train", train), ("val", val)):
            losses, accuracies = plain_loop(model, [along(params, d, t) for t in result.t], batches)
            assert result.loss[name][split] == pytest.approx(losses, abs=1e-6, rel=1e-6)
            assert result.accuracy[name][split] == pytest.approx(accuracies, abs=1e-12)
    assert result.markers["radial"] == {"origin": -1.0}
    distance = float(norm({k: params[k] - v for k, v in named(init).items()}))
    assert result.markers["init"]["init"] == pytest.approx(-distance / float(norm(params)))
    json.dumps(result.to_dict(), allow_nan=False)


def test_quadratic_lines_match_the_closed_form():
    model = Quadratic([3.0, 1.0, -0.5, 0.25])
    probe = Line(
        directions=["radial", "gradient", "hessian"], num_points=13, span=(-1.0, 2.0), scale="unit"
    )
    result = probe.measure(model, quadratic_batches(), loss_fn=quadratic_loss)
    w, g, a = model.w.detach(), model.gradient(), model.matrix
    top = torch.linalg.eigh(a).eigenvectors[:, -1]
    assert result.hessian_eigenvalue == pytest.approx(3.0, abs=1e-8)
    for name, d in (("radial", w / w.norm()), ("gradient", g / g.norm()), ("hessian", top)):
        unit = d if name != "hessian" else d * torch.sign(d[d.abs().argmax()])
        expected = [model.value(w + t * unit) for t in result.t]
        assert result.loss[name]["train"] == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert result.accuracy is None


def test_width_is_where_the_loss_first_rises_by_delta():
    t = [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert width(t, [5.0, 1.0, 0.0, 0.5, 1.5], 1.0) == (1.0, 1.5)
    assert width(t, [0.2, 0.1, 0.0, 0.1, 0.2], 1.0) == (None, None)
    assert width(t, [math.inf, 0.2, 0.0, math.nan, 0.0], 1.0) == (2.0, 1.0)
    # on a parabola 0.5 c t^2 the widths are sqrt(2 delta / c) up to the linear interpolation
    model = Quadratic([4.0, 1.0, 0.5], at_optimum=True)
    probe = Line(directions=["hessian"], num_points=201, span=(-1.0, 1.0), scale="unit", delta=0.5)
    result = probe.measure(model, quadratic_batches(), loss_fn=quadratic_loss)
    assert result.width_minus["hessian"]["train"] == pytest.approx(0.5, abs=1e-3)
    assert result.width_plus["hessian"]["train"] == pytest.approx(0.5, abs=1e-3)
    assert result.scalars()["hessian_train_width_plus"] == result.width_plus["hessian"]["train"]


def test_init_direction_uses_the_observed_initial_weights():
    model, init = mlp(1), mlp(0)
    batches = batches_for(model)
    probe = Line(directions=["init"], num_points=5)
    assert probe.point_specs() == {"init": "init"}
    with pytest.raises(ConfigError, match="init: 'init' names weights seen during training"):
        probe.measure(model, batches)
    history = WeightHistory(probe.point_specs().values())
    history.observe(named(init), step=0, epoch=0)
    point = snapshot(model, torch.nn.functional.cross_entropy)
    points = resolve_points(probe.point_specs(), point.params, history=history)
    data = {"train": DataSource(batches, name="train")}
    observed = probe.run(point, data, generator=torch.Generator().manual_seed(0), **points)
    anchored = Line(directions=["init"], num_points=5).measure(model, batches, init=init)
    assert observed.loss == anchored.loss
    assert Line(directions=["radial"]).point_specs() == {}
    with pytest.raises(ConfigError, match="got points"):
        Line(directions=["radial"], num_points=5).measure(model, batches, init=init)


def test_measure_has_no_side_effects():
    model = cnn_bn()
    batches = batches_for(model)
    with_grads(model, batches)
    torch.manual_seed(3)
    before = fingerprint(model)
    Line(directions=["random", "radial", "gradient", "hessian"], num_points=5).measure(
        model, batches
    )
    assert_same_fingerprint(before, fingerprint(model))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"directions": ["random", "spiral"]}, r"directions: got \['random', 'spiral'\]"),
        ({"directions": ["radial", "radial"]}, "directions: got"),
        ({"num_points": 6}, "num_points: got 6; expected a count whose grid"),
        ({"span": (0.0, 1.0)}, "span: got"),
        ({"scale": "filter"}, "scale: got 'filter'"),
        ({"delta": 0}, "delta: got 0; expected a number > 0"),
        ({"keep_1d": "yes"}, "keep_1d: got 'yes'"),
    ],
)
def test_invalid_arguments_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Line(**kwargs)


def test_config_file_builds_the_probe():
    node = OmegaConf.load(CONF)["line"]["probe"]
    kwargs = {k: v for k, v in OmegaConf.to_container(node).items() if k != "_target_"}
    probe = Line(**kwargs)
    assert probe.name == "line" and len(probe.t) == 41 and probe.t[20] == 0.0
