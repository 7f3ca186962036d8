import math
from pathlib import Path

import pytest
import torch
from landscape_cases import (
    Quadratic,
    assert_same_fingerprint,
    batches_for,
    cnn_bn,
    fingerprint,
    mlp,
    one_thread,  # noqa: F401 (autouse fixture)
    quadratic_batches,
    quadratic_loss,
    with_grads,
)
from omegaconf import OmegaConf

from lsuite.errors import ConfigError
from lsuite.probes.sharpness import Sharpness

CONF = Path(__file__).resolve().parents[2] / "conf" / "probes" / "sharpness.yaml"
EIGENVALUES = [3.0, 1.5, 0.7, -0.4, 0.1, -1.2]


def trust_region_max(g, h, rho):
    """Exact max of g^T e + e^T H e / 2 over ||e|| <= rho, by eigendecomposition (global max).

    On the boundary, e(mu) = (mu I - H)^{-1} g with mu > lambda_max; ||e(mu)|| decreases in mu,
    so bisection finds ||e(mu)|| = rho (the "hard case" g orthogonal to the top eigenvector does
    not occur for the random g used here). When the unconstrained maximiser of a concave model
    lies inside the ball it would be interior; these tests have lambda_max > 0.
    """
    values, vectors = torch.linalg.eigh(h)
    gt = vectors.T @ g
    top = float(values.max())
    assert top > 0

    def length(mu):
        return float(torch.linalg.vector_norm(gt / (mu - values)))

    low, high = top + 1e-14, top + 1.0
    while length(high) > rho:
        high = top + 2 * (high - top)
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if length(mid) > rho else (low, mid)
    e = vectors @ (gt / (high - values))
    return float(g @ e + 0.5 * e @ h @ e)


def measure(model, seed=0, **kwargs):
    probe = Sharpness(**kwargs)
    return probe.measure(
        model,
        quadratic_batches(),
        loss_fn=quadratic_loss,
        generator=torch.Generator().manual_seed(seed),
    )


@pytest.mark.parametrize("rho", [0.01, 0.1, 1.0])
def test_one_step_worst_case_is_sams_closed_form(rho):
    model = Quadratic(EIGENVALUES)
    g, h = model.gradient(), model.matrix
    result = measure(model, kinds=["worst_case"], rho=[rho], steps=1)
    sam = rho * g.norm() + 0.5 * rho**2 * (g @ h @ g) / (g @ g)
    assert result.worst_case[0] == pytest.approx(float(sam), rel=1e-10, abs=1e-14)
    assert result.gradient_norm == pytest.approx(float(g.norm()))
    assert result.num_gradients == 1


@pytest.mark.parametrize("rho", [0.01, 0.1, 1.0, 3.0])
def test_projected_ascent_reaches_the_exact_constrained_maximum(rho):
    model = Quadratic(EIGENVALUES)
    g, h = model.gradient(), model.matrix
    exact = trust_region_max(g, h, rho)
    result = measure(model, kinds=["worst_case"], rho=[rho], steps=60)
    assert result.worst_case[0] <= exact + 1e-10
    assert result.worst_case[0] == pytest.approx(exact, rel=1e-6)
    default = measure(model, kinds=["worst_case"], rho=[rho]).worst_case[0]  # 5 steps
    sam = measure(model, kinds=["worst_case"], rho=[rho], steps=1).worst_case[0]
    assert sam - 1e-12 <= default <= exact + 1e-10


def test_small_rho_worst_case_agrees_with_the_first_order_expansion():
    model = Quadratic(EIGENVALUES)
    g, top = model.gradient(), max(EIGENVALUES)
    for rho in (1e-3, 1e-2):
        value = measure(model, kinds=["worst_case"], rho=[rho]).worst_case[0]
        bound = rho * float(g.norm()) + 0.5 * rho**2 * top
        assert value <= bound + 1e-12
        assert value == pytest.approx(bound, rel=5 * rho)  # differs by O(rho^2) of rho ||g||


def test_worst_case_at_a_minimum_is_half_rho_squared_lambda_max():
    model = Quadratic([2.0, 0.5, 0.25, 1.0], at_optimum=True)
    for rho in (0.05, 0.5):
        result = measure(model, kinds=["worst_case"], rho=[rho], steps=80)
        assert result.gradient_norm == 0.0
        assert result.worst_case[0] == pytest.approx(0.5 * rho**2 * 2.0, rel=1e-6)


@pytest.mark.parametrize("rho", [0.05, 0.5])
def test_adaptive_sharpness_solves_the_scaled_trust_region(rho):
    model = Quadratic(EIGENVALUES)
    w = model.w.detach()
    t = w.abs()
    g, h = t * model.gradient(), t[:, None] * model.matrix * t[None, :]  # in u = e / |w|
    one = measure(model, kinds=["adaptive"], rho=[rho], steps=1).adaptive[0]
    assert one == pytest.approx(
        float(rho * g.norm() + 0.5 * rho**2 * (g @ h @ g) / (g @ g)), rel=1e-10
    )
    many = measure(model, kinds=["adaptive"], rho=[rho], steps=60).adaptive[0]
    assert many == pytest.approx(trust_region_max(g, h, rho), rel=1e-6)


def test_average_sharpness_is_half_sigma_squared_trace_per_draw():
    model = Quadratic(EIGENVALUES)
    sigma, n = 0.1, 32
    result = measure(model, seed=3, kinds=["average"], sigma=[sigma], num_samples=n)
    # antithetic pairs cancel the linear term: each sample is exactly sigma^2 z^T H z / 2
    g = torch.Generator().manual_seed(3)
    draws = torch.stack(
        [torch.randn(len(EIGENVALUES), generator=g, dtype=torch.float64) for _ in range(n)]
    )
    samples = 0.5 * sigma**2 * torch.einsum("ni,ij,nj->n", draws, model.matrix, draws)
    assert result.average[0] == pytest.approx(float(samples.mean()), rel=1e-9, abs=1e-14)
    assert result.average_stderr[0] == pytest.approx(float(samples.std() / math.sqrt(n)), rel=1e-9)
    # and the estimate is within a few standard errors of its expectation sigma^2 tr(H) / 2
    expected = 0.5 * sigma**2 * sum(EIGENVALUES)
    sd = sigma**2 * math.sqrt(0.5 * sum(v * v for v in EIGENVALUES) / n)
    assert abs(result.average[0] - expected) < 4 * sd


def test_reported_stderr_matches_the_spread_over_seeds():
    model = Quadratic(EIGENVALUES)
    runs = [
        measure(model, seed=s, kinds=["average"], sigma=[0.1], num_samples=8) for s in range(30)
    ]
    means = torch.tensor([r.average[0] for r in runs])
    rms = math.sqrt(sum(r.average_stderr[0] ** 2 for r in runs) / len(runs))
    assert float(means.std()) == pytest.approx(rms, rel=0.4)


def test_network_sharpness_is_consistent_and_has_no_side_effects():
    model = cnn_bn()
    batches = batches_for(model)
    with_grads(model, batches)
    torch.manual_seed(1)
    before = fingerprint(model)
    probe = Sharpness(rho=[0.01, 0.05], steps=3, sigma=[0.01], num_samples=4)
    a = probe.measure(model, batches, generator=torch.Generator().manual_seed(0))
    b = probe.measure(model, batches, generator=torch.Generator().manual_seed(0))
    assert_same_fingerprint(before, fingerprint(model))
    assert a.to_dict() == b.to_dict()
    assert all(v >= -1e-6 for v in a.worst_case)
    assert a.worst_case[1] >= a.worst_case[0]
    assert set(a.scalars()) >= {
        "loss",
        "worst_case_rho_0.01",
        "adaptive_rho_0.05",
        "average_sigma_0.01_stderr",
    }
    assert a.num_gradients == 1 + 2 * 2 * 2


def test_results_do_not_depend_on_the_batch_split():
    model = mlp()
    ((x, y),) = batches_for(model, sizes=(17,))
    probe = Sharpness(rho=[0.05], steps=3, sigma=[0.01], num_samples=4)
    whole = probe.measure(model, [(x, y)])
    split = probe.measure(model, [(x[:5], y[:5]), (x[5:], y[5:])])
    for field in ("loss", "gradient_norm"):
        assert getattr(whole, field) == pytest.approx(getattr(split, field), rel=1e-5)
    for field in ("worst_case", "adaptive", "average"):
        assert getattr(whole, field) == pytest.approx(getattr(split, field), rel=1e-3, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kinds": ["sharpest"]}, r"kinds: got \['sharpest'\]"),
        ({"kinds": []}, r"kinds: got \[\]"),
        ({"rho": [0.1, -1]}, r"rho: got \[0.1, -1\]; expected a non-empty list of numbers > 0"),
        ({"sigma": []}, "sigma: got"),
        ({"steps": 0}, "steps: got 0; expected an int >= 1"),
        ({"num_samples": 1}, "num_samples: got 1; expected an int >= 2"),
        ({"batching": "x"}, "batching: got 'x'"),
    ],
)
def test_invalid_arguments_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Sharpness(**kwargs)


def test_config_file_builds_the_probe():
    node = OmegaConf.load(CONF)["sharpness"]["probe"]
    kwargs = {k: v for k, v in OmegaConf.to_container(node).items() if k != "_target_"}
    probe = Sharpness(**kwargs)
    assert probe.name == "sharpness" and probe.steps == 5
