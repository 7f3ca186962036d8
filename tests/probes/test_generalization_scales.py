"""PAC-Bayes sigma and worst-case sharpness alpha' against closed forms on quadratics."""

import math

import pytest
import torch
from scipy.optimize import brentq
from torch import nn

from lsuite.functional.bisection import largest_below
from lsuite.functional.params import flatten
from lsuite.probes.data_source import DataSource
from lsuite.probes.directions import loss_and_gradient
from lsuite.probes.perturbation_scales import criterion_values, pacbayes_sigma, sharpness_alpha
from lsuite.probes.point import snapshot

TARGET = 0.1
DEPTH = 20
RATIO = 2 ** (2**-DEPTH)  # the final bracket's upper / lower


class DiagonalQuadratic(nn.Module):
    """Output ``0.5 sum_i a_i (w_i - w*_i)^2`` for every sample."""

    def __init__(self, curvatures, optimum, weights):
        super().__init__()
        self.register_buffer("curvatures", torch.as_tensor(curvatures, dtype=torch.float64))
        self.register_buffer("optimum", torch.as_tensor(optimum, dtype=torch.float64))
        self.w = nn.Parameter(torch.as_tensor(weights, dtype=torch.float64).clone())

    def forward(self, x):
        d = self.w - self.optimum
        return (0.5 * (self.curvatures * d * d).sum()).expand(x.shape[0])


def mean_output(outputs, targets):
    del targets
    return outputs.mean()


def setup(model):
    point = snapshot(model, mean_output)
    source = DataSource([(torch.zeros(n, 1, dtype=torch.float64), torch.zeros(n)) for n in (2, 3)])
    return point, source, flatten(point.params)


def loss_at(point, source, flat):
    return float(criterion_values(point, source, flat, flat.new_zeros(1, flat.numel()), "loss")[0])


def test_largest_below_brackets_up_and_down_and_reports_failure():
    for start in (1e-6, 0.3, 1e5):
        found = largest_below(lambda s: s * s, 2.0, start=start, depth=30)
        assert found.bracketed
        assert found.value <= math.sqrt(2) < found.upper <= found.value * 1.0001
    flat = largest_below(lambda s: 0.0, 1.0, start=1.0, depth=5, largest=64.0)
    assert not flat.bracketed and flat.value == 64.0
    steep = largest_below(lambda s: 1.0 + s, 0.5, start=1.0, depth=5)
    assert steep.value == 0.0
    diverged = largest_below(lambda s: math.nan if s > 1 else 0.0, 0.5, start=0.25, depth=10)
    assert 1.0 / 1.01 < diverged.value <= 1.0


def test_pacbayes_sigma_hits_the_closed_form_of_its_draws(make_quadratic):
    """E[L(w + u)] - L(w) = sigma^2 tr(A) / 2; for the draws z_k exactly sigma^2 z^T A z / 2."""
    case = make_quadratic([4.0, 2.0, 1.0, 0.5, 0.1, 3.0])
    point, source, flat = setup(case.model)
    a = case.hessian
    draws = torch.randn(5, flat.numel(), generator=torch.Generator().manual_seed(0)).double()
    found = pacbayes_sigma(
        point,
        source,
        flat,
        draws,
        target=TARGET,
        criterion="loss",
        base_value=loss_at(point, source, flat),
        magnitude_eps=None,
        start=0.01,
        depth=DEPTH,
    )
    quadratic_forms = torch.einsum("kp,pq,kq->k", draws, a, draws).mean()
    exact = math.sqrt(2 * TARGET / float(quadratic_forms))
    assert exact / RATIO <= found.value * (1 + 1e-9) and found.value <= exact * (1 + 1e-9)


def test_pacbayes_sigma_equals_a_brute_force_search_and_the_expectation(make_quadratic):
    case = make_quadratic([4.0, 2.0, 1.0, 0.5, 0.1, 3.0])
    point, source, flat = setup(case.model)
    a, optimum = case.hessian, case.model.optimum
    draws = torch.randn(100, flat.numel(), generator=torch.Generator().manual_seed(1)).double()
    found = pacbayes_sigma(
        point,
        source,
        flat,
        draws,
        target=TARGET,
        criterion="loss",
        base_value=loss_at(point, source, flat),
        magnitude_eps=None,
        start=1.0,
        depth=8,
    )

    def loss(w):  # (M, P) -> (M,), by hand
        d = w - optimum
        return 0.5 * torch.einsum("mp,pq,mq->m", d, a, d)

    grid = torch.linspace(0.001, 1.0, 1000, dtype=torch.float64)  # brute force, same draws
    rises = [
        float(loss(torch.cat([flat + s * draws, flat - s * draws])).mean() - loss(flat[None])[0])
        for s in grid.tolist()
    ]
    best = max(s for s, r in zip(grid.tolist(), rises, strict=True) if r <= TARGET)
    assert found.value == pytest.approx(best, abs=float(grid[1] - grid[0]) + 0.01 * best)
    trace = float(torch.trace(a))
    expected = math.sqrt(2 * TARGET / trace)  # of the expectation: within the Monte Carlo error
    relative_se = math.sqrt(2 * float(torch.trace(a @ a)) / 100) / trace
    assert abs(found.value / expected - 1) < 4 * relative_se / 2 + 0.01


def test_magnitude_aware_sigma_uses_a_standard_deviation_not_a_variance():
    """u_i ~ N(0, sigma^2 w_i^2 + eps^2): E rise = sum_i a_i (sigma^2 w_i^2 + eps^2) / 2."""
    a = torch.tensor([2.0, 1.0, 0.5, 4.0], dtype=torch.float64)
    w = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)
    model = DiagonalQuadratic(a, torch.zeros(4), w)
    point, source, flat = setup(model)
    eps = 0.05
    draws = torch.randn(3, 4, generator=torch.Generator().manual_seed(2)).double()
    found = pacbayes_sigma(
        point,
        source,
        flat,
        draws,
        target=TARGET,
        criterion="loss",
        base_value=loss_at(point, source, flat),
        magnitude_eps=eps,
        start=0.01,
        depth=DEPTH,
    )

    def rise(sigma):  # by hand, on the same draws (antithetic pairs are exact on a quadratic)
        std = torch.sqrt(sigma**2 * w**2 + eps**2)
        return float((0.5 * a * (std * draws) ** 2).sum(1).mean())

    assert rise(found.value) <= TARGET < rise(found.value * RATIO * (1 + 1e-9))
    # the variance-as-std bug would give std = sigma^2 w^2 + eps^2, a different scale
    wrong = brentq(
        lambda s: float((0.5 * a * ((s**2 * w**2 + eps**2) * draws) ** 2).sum(1).mean()) - TARGET,
        1e-6,
        100.0,
    )
    assert abs(found.value - wrong) > 0.05


@pytest.mark.parametrize("at_minimum", [False, True], ids=["off_minimum", "at_minimum"])
def test_sharpness_alpha_is_the_closed_form_box_maximum(at_minimum):
    """max_{|u_i| <= alpha} L(w + u) - L(w) = sum_i a_i (|d_i| alpha + alpha^2 / 2)."""
    a = torch.tensor([2.0, 1.0, 0.5, 4.0, 0.25], dtype=torch.float64)
    d = torch.zeros(5) if at_minimum else torch.tensor([0.3, -0.2, 0.05, -0.01, 0.5])
    model = DiagonalQuadratic(a, torch.zeros(5), d)
    point, source, flat = setup(model)
    loss, gradient = loss_and_gradient(point, source, flat)
    signs = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0], dtype=torch.float64)
    counter = [0]
    found = sharpness_alpha(
        point,
        source,
        flat,
        gradient,
        signs,
        target=TARGET,
        criterion="loss",
        base_value=loss,
        magnitude_eps=None,
        steps=2,
        start=0.01,
        depth=DEPTH,
        counter=counter,
    )
    trace, slope = float(a.sum()), float((a * d.abs()).sum())
    exact = (-slope + math.sqrt(slope**2 + 2 * trace * TARGET)) / trace
    assert exact / RATIO <= found.value * (1 + 1e-9) and found.value <= exact * (1 + 1e-9)
    assert counter[0] == found.evaluations  # one gradient per alpha (steps - 1)


def test_magnitude_aware_sharpness_box_is_alpha_w_plus_eps():
    a = torch.tensor([2.0, 1.0, 0.5, 4.0], dtype=torch.float64)
    optimum = torch.tensor([0.1, -0.3, 0.0, 0.2], dtype=torch.float64)
    w = torch.tensor([0.5, -1.0, 0.2, 0.25], dtype=torch.float64)
    model = DiagonalQuadratic(a, optimum, w)
    point, source, flat = setup(model)
    loss, gradient = loss_and_gradient(point, source, flat)
    eps = 0.01
    found = sharpness_alpha(
        point,
        source,
        flat,
        gradient,
        torch.ones(4, dtype=torch.float64),
        target=TARGET,
        criterion="loss",
        base_value=loss,
        magnitude_eps=eps,
        steps=1,
        start=0.01,
        depth=DEPTH,
        counter=[0],
    )
    d = (w - optimum).abs()

    def rise(alpha):  # the box maximum is at u_i = b_i sign(d_i)
        b = alpha * w.abs() + eps
        return float((a * (d * b + b * b / 2)).sum())

    assert found.value == pytest.approx(brentq(lambda s: rise(s) - TARGET, 0.0, 10.0), rel=1e-5)
