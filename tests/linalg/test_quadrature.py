import math

import pytest
import torch

from lsuite.linalg.quadrature import QuadratureRule, gaussian_density, stochastic_lanczos_quadrature

F64 = torch.float64


def symmetric(values, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(values)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    return q @ torch.diag(torch.as_tensor(values, dtype=F64)) @ q.T


def slq(a, runs, steps, seed=0):
    return stochastic_lanczos_quadrature(
        lambda v: a @ v,
        a.shape[0],
        num_runs=runs,
        num_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        dtype=F64,
        device=torch.device("cpu"),
    )


def test_each_rule_has_unit_mass_and_matches_the_start_vector_moments():
    a = symmetric(torch.linspace(-1, 4, 60).tolist())
    rules, used = slq(a, 3, 10)
    assert used == 30
    g = torch.Generator().manual_seed(0)
    for rule in rules:
        # Re-draw the same Rademacher start vector: the rule integrates t and t^2 exactly.
        v = (2 * torch.randint(0, 2, (1, 60), generator=g, dtype=F64) - 1)[0]
        assert float(rule.weights.sum()) == pytest.approx(1.0, abs=1e-12)
        assert float((rule.weights * rule.nodes).sum()) == pytest.approx(
            float(v @ a @ v) / 60, rel=1e-10
        )
        assert float((rule.weights * rule.nodes**2).sum()) == pytest.approx(
            float(v @ a @ a @ v) / 60, rel=1e-10
        )
        assert torch.all(rule.nodes[1:] >= rule.nodes[:-1])


def test_moments_estimate_trace_and_frobenius_norm():
    a = symmetric(
        (torch.randn(100, generator=torch.Generator().manual_seed(1), dtype=F64) + 0.5).tolist()
    )
    runs = 40
    rules, _ = slq(a, runs, 8)
    first = torch.stack([(r.weights * r.nodes).sum() for r in rules])
    second = torch.stack([(r.weights * r.nodes**2).sum() for r in rules])
    n = a.shape[0]
    # Rademacher variance of v^T B v / n is 2 (||B||_F^2 - sum B_ii^2) / n^2.
    for sample, b in ((first, a), (second, a @ a)):
        sd = math.sqrt(2 * (torch.sum(b**2) - torch.sum(torch.diag(b) ** 2))) / n
        assert abs(float(sample.mean()) - float(torch.trace(b)) / n) < 4.5 * sd / math.sqrt(runs)


def test_few_distinct_eigenvalues_give_the_exact_spectrum():
    a = symmetric([2.0] * 10 + [-1.0] * 20 + [0.5] * 30)
    rules, used = slq(a, 2, 50)
    assert used == 6  # three steps per run: then the Krylov space is invariant
    for rule in rules:
        assert rule.nodes.tolist() == pytest.approx([-1.0, 0.5, 2.0], abs=1e-10)
        # Weights are the squared projections of the start vector: about 20/60, 30/60, 10/60.
        assert rule.weights.tolist() == pytest.approx([1 / 3, 1 / 2, 1 / 6], abs=0.15)


def test_gaussian_density_integrates_to_one_and_peaks_at_nodes():
    rules = [
        QuadratureRule(torch.tensor([0.0, 1.0], dtype=F64), torch.tensor([0.25, 0.75], dtype=F64)),
        QuadratureRule(torch.tensor([0.0], dtype=F64), torch.tensor([1.0], dtype=F64)),
    ]
    grid = torch.linspace(-2, 3, 5001, dtype=F64)
    density = gaussian_density(rules, grid, 0.05)
    assert float(torch.trapezoid(density, grid)) == pytest.approx(1.0, abs=1e-6)
    # Mass 0.625 at 0 and 0.375 at 1.
    assert float(density[grid.sub(0.0).abs().argmin()]) == pytest.approx(
        0.625 / (0.05 * math.sqrt(2 * math.pi)), rel=1e-6
    )
