import numpy as np
import pytest
import torch
import torch.nn.functional as F
from landscape_cases import (
    Quadratic,
    batches_for,
    cnn_bn,
    mlp,
    named,
    one_thread,  # noqa: F401 (autouse fixture)
    quadratic_batches,
    quadratic_loss,
)
from torch import nn

from lsuite.errors import ConfigError
from lsuite.functional.params import flatten, norm
from lsuite.probes.data_source import DataSource
from lsuite.probes.directions import (
    cosine,
    filter_normalize,
    gaussian_like,
    gradient_direction,
    hessian_directions,
    plane_through,
    random_direction,
    rescale,
    trajectory_directions,
)
from lsuite.probes.point import snapshot


def conv_params():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 5))
    params = named(model)
    params["0.weight"][2] = 0.0  # a dead filter
    return params


@pytest.mark.parametrize("keep_1d", [False, True])
def test_filter_normalised_directions_have_the_filter_norms_of_the_weights(keep_1d):
    params = conv_params()
    direction = random_direction(params, torch.Generator().manual_seed(0), keep_1d=keep_1d)
    for k, w in params.items():
        d = direction[k]
        assert torch.isfinite(d).all()
        if w.dim() >= 2:
            expected = w.reshape(w.shape[0], -1).norm(dim=1)
            torch.testing.assert_close(d.reshape(d.shape[0], -1).norm(dim=1), expected)
        elif keep_1d:
            torch.testing.assert_close(d.norm(), w.norm())
        else:
            assert torch.count_nonzero(d) == 0
    assert torch.count_nonzero(direction["0.weight"][2]) == 0  # zero filter: no division by zero


def test_filter_normalize_scales_each_filter_of_a_given_direction():
    params = conv_params()
    raw = gaussian_like(params, torch.Generator().manual_seed(1))
    out = filter_normalize(raw, params)
    row = out["3.weight"][1]
    ratio = row / raw["3.weight"][1]
    torch.testing.assert_close(
        ratio,
        torch.full_like(ratio, float(params["3.weight"][1].norm() / raw["3.weight"][1].norm())),
    )


def test_random_directions_come_only_from_the_generator():
    params = named(mlp())
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = random_direction(params, torch.Generator().manual_seed(5))
    b = random_direction(params, torch.Generator().manual_seed(5))
    c = random_direction(params, torch.Generator().manual_seed(6))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])
    for to, expected in (("model", float(norm(params))), ("unit", 1.0)):
        scaled = random_direction(params, torch.Generator().manual_seed(5), normalization=to)
        assert float(norm(scaled)) == pytest.approx(expected, rel=1e-6)


def test_rescale_rejects_a_zero_direction():
    params = named(mlp())
    with pytest.raises(ConfigError, match="zero vector"):
        rescale({k: torch.zeros_like(v) for k, v in params.items()}, params, "unit")


@pytest.mark.parametrize("kind", ["mlp", "cnn_bn"])
def test_gradient_direction_is_the_gradient_of_the_mean_loss(kind):
    model = {"mlp": mlp, "cnn_bn": cnn_bn}[kind](dtype=torch.float64)
    batches = batches_for(model)
    point = snapshot(model, F.cross_entropy)
    gradient = gradient_direction(point, DataSource(batches))

    def loss(flat):
        from lsuite.functional.params import unflatten

        params = unflatten(flat, point.params)
        return sum(len(y) / 17 * F.cross_entropy(point.outputs(x, params), y) for x, y in batches)

    expected = torch.func.grad(loss)(flatten(point.params))
    torch.testing.assert_close(flatten(gradient), expected, atol=1e-10, rtol=1e-8)
    assert all(p.grad is None for p in model.parameters())


def test_hessian_directions_are_the_extreme_eigenvectors_of_a_quadratic():
    eigenvalues = [4.0, 2.5, 1.0, -0.5, -3.0, 0.2]
    model = Quadratic(eigenvalues)
    point = snapshot(model, quadratic_loss)
    source = DataSource(quadratic_batches())
    g = torch.Generator().manual_seed(0)
    directions, values = hessian_directions(point, source, ("largest", "largest", "smallest"), g)
    assert values == pytest.approx([4.0, 2.5, -3.0], abs=1e-8)
    evecs = torch.linalg.eigh(model.matrix).eigenvectors
    for d, column in zip(directions, (evecs[:, -1], evecs[:, -2], evecs[:, 0]), strict=True):
        v = d["w"]
        assert float(v.norm()) == pytest.approx(1.0, abs=1e-10)
        assert abs(float(v @ column)) == pytest.approx(1.0, abs=1e-8)
        assert float(v[v.abs().argmax()]) > 0  # sign fixed


def test_trajectory_directions_match_a_numpy_pca():
    g = torch.Generator().manual_seed(0)
    center = {"a": torch.randn(5, 3, generator=g), "b": torch.randn(4, generator=g)}
    path = [
        {k: v + torch.randn(v.shape, generator=g) * (i + 1) for k, v in center.items()}
        for i in range(6)
    ]
    directions, explained, coords = trajectory_directions(path, center)
    rows = np.stack([flatten(w).numpy() - flatten(center).numpy() for w in path]).astype(np.float64)
    centred = rows - rows.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    for d, v in zip(directions, vt[:2], strict=True):
        assert abs(float(flatten(d).double() @ torch.from_numpy(v))) == pytest.approx(1.0, abs=1e-5)
    assert explained == pytest.approx((s[:2] ** 2 / (s**2).sum()).tolist(), rel=1e-6)
    expected = rows @ np.stack([flatten(d).double().numpy() for d in directions]).T
    np.testing.assert_allclose(coords.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert cosine(directions[0], directions[1]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="trajectory"):
        trajectory_directions(path[:1], center)


def test_plane_through_three_points_reconstructs_them():
    g = torch.Generator().manual_seed(0)
    points = [{"w": torch.randn(2, 5, generator=g, dtype=torch.float64)} for _ in range(3)]
    origin, (u, v), coords = plane_through(points)
    assert float(norm(u)) == pytest.approx(1.0) and float(norm(v)) == pytest.approx(1.0)
    assert cosine(u, v) == pytest.approx(0.0, abs=1e-12)
    for p, (x, y) in zip(points, coords.tolist(), strict=True):
        torch.testing.assert_close(origin["w"] + x * u["w"] + y * v["w"], p["w"])
    with pytest.raises(ConfigError, match="one line"):
        plane_through([points[0], points[1], {"w": 2 * points[1]["w"] - points[0]["w"]}])
