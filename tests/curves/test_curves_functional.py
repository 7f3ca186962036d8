"""Curve and simplex coefficients, combinations and the simplex volume against closed forms."""

import math

import numpy as np
import pytest
import torch

from lsuite.errors import ConfigError
from lsuite.functional.curves import (
    bezier_coefficients,
    combine,
    combine_flat,
    curve_coefficients,
    dirichlet_coordinates,
    polychain_coefficients,
    simplex_grid,
)
from lsuite.functional.simplex_volume import simplex_log_volume, simplex_volume

T = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.8, 1.0], dtype=torch.float64)


def test_quadratic_bezier_is_bernstein():
    c = bezier_coefficients(T, 3)
    expected = torch.stack([(1 - T) ** 2, 2 * T * (1 - T), T**2], dim=1)
    torch.testing.assert_close(c, expected)


def test_cubic_bezier_and_rows_sum_to_one():
    c = bezier_coefficients(T, 4)
    expected = torch.stack([(1 - T) ** 3, 3 * T * (1 - T) ** 2, 3 * T**2 * (1 - T), T**3], 1)
    torch.testing.assert_close(c, expected)
    torch.testing.assert_close(c.sum(1), torch.ones(len(T), dtype=torch.float64))


def test_polychain_is_piecewise_linear_through_bends():
    # 2 bends at t = 1/3 and 2/3
    c = polychain_coefficients(torch.tensor([0.0, 1 / 6, 1 / 3, 0.5, 1.0], dtype=torch.float64), 4)
    expected = torch.tensor(
        [[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 1, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0, 1]],
        dtype=torch.float64,
    )
    torch.testing.assert_close(c, expected)


def test_points_and_gradients_equal_closed_forms():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g).double()
    theta = torch.randn(5, generator=g, dtype=torch.float64).requires_grad_(True)
    t = 0.3
    for kind, weight in (("bezier", 2 * t * (1 - t)), ("polychain", 1 - abs(2 * t - 1))):
        c = curve_coefficients(kind, torch.tensor([t], dtype=torch.float64), 3)[0]
        point = combine([{"w": a}, {"w": theta}, {"w": b}], c)["w"]
        if kind == "bezier":
            closed = (1 - t) ** 2 * a + 2 * t * (1 - t) * theta + t**2 * b
        else:  # t < 0.5: on the segment from a to the bend
            closed = (1 - 2 * t) * a + 2 * t * theta
        torch.testing.assert_close(point, closed)
        # d/dtheta of sum(v * w(t)) is weight * v
        v = torch.randn(5, generator=g, dtype=torch.float64)
        (grad,) = torch.autograd.grad((v * point).sum(), theta)
        torch.testing.assert_close(grad, weight * v)
        flat = combine_flat(torch.stack([a, theta.detach(), b]), c)
        torch.testing.assert_close(flat, point.detach())


def test_simplex_grid_and_dirichlet():
    grid = simplex_grid(3, 2)
    assert grid.shape == (math.comb(4, 2), 3)
    torch.testing.assert_close(grid.sum(1), torch.ones(6, dtype=torch.float64))
    assert {tuple(r) for r in grid.tolist()} >= {(1.0, 0.0, 0.0), (0.5, 0.5, 0.0)}
    draws = dirichlet_coordinates(3, 4000, torch.Generator().manual_seed(0), torch.float64)
    assert (draws >= 0).all()
    torch.testing.assert_close(draws.sum(1), torch.ones(4000, dtype=torch.float64))
    # Dirichlet(1,1,1): mean 1/3, variance (1/3)(2/3)/4 = 1/18; 4000 draws: stderr ~0.0037
    assert (draws.mean(0) - 1 / 3).abs().max() < 0.015
    assert abs(float(draws[:, 0].var()) - 1 / 18) < 0.006


def test_simplex_volume_by_hand():
    # a right triangle with legs 3 and 4 in R^5: area 6
    v = torch.zeros(3, 5, dtype=torch.float64)
    v[1, 0], v[2, 1] = 3.0, 4.0
    v += torch.arange(5.0, dtype=torch.float64)  # translation does not matter
    torch.testing.assert_close(simplex_volume(v), torch.tensor(6.0, dtype=torch.float64))
    # a segment: its length; a regular tetrahedron of edge 1: 1 / (6 sqrt 2)
    seg = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    torch.testing.assert_close(simplex_volume(seg), torch.tensor(5.0, dtype=torch.float64))
    s = 1 / math.sqrt(2)
    tet = s * torch.eye(4, dtype=torch.float64)
    expected = 1 / (6 * math.sqrt(2))
    torch.testing.assert_close(simplex_volume(tet), torch.tensor(expected, dtype=torch.float64))


def test_log_volume_equals_cayley_menger_and_its_gradient():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(4, 7, generator=g, dtype=torch.float64)
    d2 = torch.cdist(v, v).pow(2).numpy()
    n = 3  # dimension of the simplex
    cm = np.ones((5, 5))
    cm[0, 0] = 0
    cm[1:, 1:] = d2
    volume_sq = (-1) ** (n + 1) / (2**n * math.factorial(n) ** 2) * np.linalg.det(cm)
    log_volume = simplex_log_volume(v)
    assert float(log_volume) == pytest.approx(0.5 * math.log(volume_sq), rel=1e-9)
    free = v[3].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(simplex_log_volume(torch.cat([v[:3], free[None]])), free)
    # d log vol / d free vertex = (its offset from the opposite face's plane) / height^2
    base = v[:3]
    edges = (base[1:] - base[0]).T
    foot = base[0] + edges @ torch.linalg.lstsq(edges, v[3] - base[0]).solution
    height = v[3] - foot
    torch.testing.assert_close(grad, height / height.pow(2).sum())


def test_bad_counts_are_config_errors():
    with pytest.raises(ConfigError, match="num_points: got 1"):
        bezier_coefficients(T, 1)
    with pytest.raises(ConfigError, match="kind: got 'spline'"):
        curve_coefficients("spline", T, 3)
