import copy
import json
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
from lsuite.functional.params import flatten
from lsuite.probes.data_source import DataSource
from lsuite.probes.directions import plane_through, random_direction
from lsuite.probes.plane import FIT_FRACTION, Plane, section_values
from lsuite.probes.point import snapshot

CONF = Path(__file__).resolve().parents[2] / "conf" / "probes" / "plane.yaml"


def at(origin, d1, d2, x, y):
    return {k: origin[k] + x * d1[k] + y * d2[k] for k in origin}


@pytest.mark.parametrize("batching", ["loop", "vmap"])
@pytest.mark.parametrize("make", [mlp, cnn_bn], ids=["mlp", "cnn_bn"])
def test_random_plane_equals_a_plain_loop(make, batching):
    model = make()
    train, val = batches_for(model, 0), batches_for(model, 1, sizes=(6,))
    probe = Plane(num_points=5, span=(-1.0, 1.0), batching=batching)
    result = probe.measure(
        model, train, val_batches=val, generator=torch.Generator().manual_seed(2)
    )
    assert result.batching == batching and result.x == [-1.0, -0.5, 0.0, 0.5, 1.0]
    params = named(model)
    g = torch.Generator().manual_seed(2)
    d1, d2 = random_direction(params, g), random_direction(params, g)
    weights = [at(params, d1, d2, x, y) for x in result.x for y in result.y]
    for split, batches in (("train", train), ("val", val)):
        losses, accuracies = plain_loop(model, weights, batches)
        got = [v for row in result.loss[split] for v in row]
        assert got == pytest.approx(losses, abs=1e-6, rel=1e-6)
        assert [v for row in result.accuracy[split] for v in row] == pytest.approx(
            accuracies, abs=1e-12
        )
        assert result.center_loss[split] == pytest.approx(
            plain_loop(model, [params], batches)[0][0], abs=1e-6
        )
        assert result.min_loss[split] == pytest.approx(min(losses), abs=1e-6)
    assert result.markers == {"center": [0.0, 0.0]}
    json.dumps(result.to_dict(), allow_nan=False)


def test_plane_on_a_quadratic_matches_the_closed_form():
    model = Quadratic([2.0, 1.0, 0.5, -0.3])
    probe = Plane(directions="hessian", num_points=7, span=(-1.5, 1.5))
    result = probe.measure(model, quadratic_batches(), loss_fn=quadratic_loss)
    assert result.hessian_eigenvalues == pytest.approx([2.0, 1.0], abs=1e-8)
    assert (
        result.direction_norms == pytest.approx([1.0, 1.0]) and abs(result.direction_cosine) < 1e-10
    )
    vectors = torch.linalg.eigh(model.matrix).eigenvectors
    u, v = vectors[:, -1], vectors[:, -2]
    u, v = u * torch.sign(u[u.abs().argmax()]), v * torch.sign(v[v.abs().argmax()])
    w, g = model.w.detach(), model.gradient()
    base = model.value(w)
    for i, x in enumerate(result.x):
        for j, y in enumerate(result.y):
            # L(w + x u + y v) = L(w) + g.(x u + y v) + (2 x^2 + y^2) / 2
            expected = base + float(g @ (x * u + y * v)) + 0.5 * (2.0 * x * x + 1.0 * y * y)
            assert result.loss["train"][i][j] == pytest.approx(expected, rel=1e-10, abs=1e-12)
    extremes = Plane(directions="hessian", hessian_which="extremes", num_points=3)
    assert extremes.measure(
        model, quadratic_batches(), loss_fn=quadratic_loss
    ).hessian_eigenvalues == pytest.approx([2.0, -0.3], abs=1e-8)


def test_same_values_as_loss_landscapes_at_the_points_both_grids_contain():
    """loss_landscapes.random_plane vs lsuite on the library's own directions, same process.

    The grids differ (baselines.md 7.4): with ``steps=20`` loss-landscapes starts at
    ``w - 10 d1 - 10 d2`` and walks a zig-zag, so row ``i`` (along ``d1``) holds the points
    ``(i - 10, m - 9)`` for even ``i`` and ``(i - 10, m - 10)`` for odd ``i`` (``m = 0..19``),
    in units of its step-scaled directions; it never evaluates ``w`` itself. lsuite's symmetric
    21 x 21 grid over ``[-10, 10]^2`` in the same units contains all of those points and the
    centre. The directions are U[0, 1) draws rebuilt with the library's own functions and seed.
    """
    import loss_landscapes
    from loss_landscapes.metrics import Loss
    from loss_landscapes.model_interface.model_parameters import orthogonal_to, rand_u_like
    from loss_landscapes.model_interface.model_wrapper import wrap_model

    model = mlp().eval()
    ((x, y),) = batches_for(model, sizes=(17,))
    steps = 20
    torch.manual_seed(0)
    theirs = loss_landscapes.random_plane(
        copy.deepcopy(model),
        Loss(F.cross_entropy, x, y),
        distance=1,
        steps=steps,
        normalization="filter",
        deepcopy_model=True,
    )
    torch.manual_seed(0)
    start = wrap_model(copy.deepcopy(model)).get_module_parameters()
    one = rand_u_like(start)
    two = orthogonal_to(one)
    directions = []
    for d in (one, two):
        d.filter_normalize_(start)
        d.mul_(((start.model_norm() / 1) / steps) / d.model_norm())
        directions.append(
            {n: p.clone() for (n, _), p in zip(model.named_parameters(), d, strict=True)}
        )
    point = snapshot(model, F.cross_entropy)
    axis = [float(i) for i in range(-10, 11)]
    values, _ = section_values(
        point, {"train": DataSource([(x, y)])}, point.params, tuple(directions), axis, axis
    )
    ours = values["train"].loss.reshape(21, 21)
    compared = 0
    for i in range(steps):
        for m in range(steps):
            j = m + 1 if i % 2 == 0 else m  # index into our y axis (-10..10)
            assert float(ours[i, j]) == pytest.approx(float(theirs[i][m]), rel=1e-5, abs=1e-5)
            compared += 1
    assert compared == 400


def test_trajectory_plane_projects_the_observed_weights():
    model = mlp(3)
    batches = batches_for(model)
    final = named(model)
    probe = Plane(directions="trajectory", num_points=5)
    g = torch.Generator().manual_seed(0)
    path = [
        {k: v + torch.randn(v.shape, generator=g) * 0.3 * (4 - i) for k, v in final.items()}
        for i in range(4)
    ]
    history = WeightHistory(probe.point_specs().values())
    for i, w in enumerate(path):
        history.observe(w, step=10 * i, epoch=max(i - 1, 0))
    restored = WeightHistory(probe.point_specs().values())
    restored.load_state_dict(copy.deepcopy(history.state_dict()))
    result = probe.measure(model, batches, trajectory=restored.observations)
    assert result.trajectory_steps == [0, 10, 20, 30]
    assert sum(result.explained_variance) <= 1.0 + 1e-9
    extent = max(abs(c) for p in result.trajectory for c in p)
    assert extent == pytest.approx(FIT_FRACTION * 1.0)
    # the directions are orthogonal with equal norms, and the coordinates are projections
    assert abs(result.direction_cosine) < 1e-5
    assert result.direction_norms[0] == pytest.approx(result.direction_norms[1], rel=1e-5)
    scale = result.direction_norms[0]
    rows = torch.stack([flatten(w) - flatten(final) for w in path])
    assert float(torch.linalg.matrix_norm(rows)) ** 2 >= sum(
        (scale * c) ** 2 for p in result.trajectory for c in p
    ) * (1 - 1e-5)
    assert (
        result.markers["center"] == [0.0, 0.0] and result.markers["start"] == result.trajectory[0]
    )


def test_points_plane_passes_through_the_three_weight_vectors():
    model, a, b = mlp(0), mlp(1), mlp(2)
    batches = batches_for(model)
    probe = Plane(
        directions="points", points=("init", "step:5", "current"), num_points=5, span=(-1.0, 1.0)
    )
    result = probe.measure(model, batches, points=[a, b, model])
    origin, (u, v), coords = plane_through([named(a), named(b), named(model)])
    factor = float(coords.abs().max()) / FIT_FRACTION
    for name, c in zip(("init", "step:5", "current"), coords.tolist(), strict=True):
        assert result.markers[name] == pytest.approx([c[0] / factor, c[1] / factor])
    assert max(abs(c) for m in result.markers.values() for c in m) == pytest.approx(FIT_FRACTION)
    d1 = {k: t * factor for k, t in u.items()}
    d2 = {k: t * factor for k, t in v.items()}
    weights = [at(origin, d1, d2, x, y) for x in result.x for y in result.y]
    losses, _ = plain_loop(model, weights, batches)
    assert [v for row in result.loss["train"] for v in row] == pytest.approx(
        losses, abs=1e-6, rel=1e-6
    )
    observed = Plane(directions="points", num_points=5)  # init, middle, current
    history = WeightHistory(observed.point_specs()["points"])
    for step, w in ((0, a), (5, b), (10, mlp(4)), (15, mlp(5))):
        history.observe(named(w), step=step, epoch=step // 5)
    points = resolve_points(observed.point_specs(), named(model), history=history)
    marks = observed.measure(model, batches, **points).markers
    expected = plane_through([named(a), named(mlp(4)), named(model)])[2]
    ratio = float(expected.abs().max()) / FIT_FRACTION
    assert marks["middle"] == pytest.approx((expected[1] / ratio).tolist(), abs=1e-6)


def test_measure_has_no_side_effects_and_ignores_the_batch_split():
    model = cnn_bn()
    batches = batches_for(model)
    with_grads(model, batches)
    torch.manual_seed(5)
    before = fingerprint(model)
    probe = Plane(num_points=3)
    a = probe.measure(model, batches, generator=torch.Generator().manual_seed(1))
    assert_same_fingerprint(before, fingerprint(model))
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    b = probe.measure(model, [(x, y)], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        torch.tensor(a.loss["train"]), torch.tensor(b.loss["train"]), atol=1e-6, rtol=1e-6
    )
    assert a.accuracy["train"] == b.accuracy["train"] or torch.allclose(
        torch.tensor(a.accuracy["train"], dtype=torch.float64),
        torch.tensor(b.accuracy["train"], dtype=torch.float64),
        atol=1e-12,
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"directions": "pca"}, "directions: got 'pca'"),
        ({"num_points": 20}, "num_points: got 20; expected a count whose grid"),
        ({"span": (1.0, 2.0)}, "span: got"),
        (
            {"normalization": "fit"},
            "normalization: got 'fit'; expected one of \\['filter', 'model', 'unit'\\]",
        ),
        ({"directions": "hessian", "normalization": "filter"}, "normalization: got 'filter'"),
        ({"hessian_which": "top"}, "hessian_which: got 'top'"),
        ({"points": ("init", "current")}, "points: got"),
        ({"points": ("init", "init", "current")}, "three different specs"),
        ({"points": ("init", "step:x", "current")}, "points: got 'step:x'"),
    ],
)
def test_invalid_arguments_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Plane(**kwargs)


def test_trajectory_needs_enough_observations():
    model = mlp()
    probe = Plane(directions="trajectory", num_points=3)
    history = WeightHistory(["trajectory"])
    history.observe(named(mlp(1)), step=0, epoch=0)
    with pytest.raises(ConfigError, match="'trajectory' needs at least three"):
        probe.measure(model, batches_for(model), trajectory=history.observations)
    with pytest.raises(ConfigError, match="trajectory: not given"):
        probe.run(
            snapshot(model, torch.nn.functional.cross_entropy),
            {"train": DataSource(batches_for(model), name="train")},
            generator=torch.Generator(),
        )


def test_config_file_builds_the_probe():
    node = OmegaConf.load(CONF)["plane"]["probe"]
    kwargs = {k: v for k, v in OmegaConf.to_container(node).items() if k != "_target_"}
    probe = Plane(**kwargs)
    assert probe.name == "plane" and len(probe.axis) == 21 and probe.axis[10] == 0.0
    assert probe.normalization == "filter"
