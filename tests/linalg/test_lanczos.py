import pytest
import torch

from lsuite.linalg.eigenpairs import extreme_eigenpairs
from lsuite.linalg.lanczos import lanczos
from lsuite.linalg.operator import DenseOperator


def matrix_with_spectrum(eigenvalues, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.as_tensor(eigenvalues, dtype=torch.float64)) @ q.T


def start(n, seed=1):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_decomposition_satisfies_the_lanczos_relation():
    a = matrix_with_spectrum(torch.linspace(-1, 3, 40).tolist())
    d = lanczos(lambda v: a @ v, start(40), 12)
    q, t = d.basis, d.tridiagonal()
    assert q.shape == (12, 40)
    assert torch.allclose(q @ q.T, torch.eye(12, dtype=torch.float64), atol=1e-13)
    # A Q^T - Q^T T is zero except in the last column (the residual beta_m q_{m+1}).
    r = a @ q.T - q.T @ t
    assert torch.allclose(r[:, :-1], torch.zeros(40, 11, dtype=torch.float64), atol=1e-12)
    assert torch.linalg.norm(r[:, -1]) == pytest.approx(d.residual_norm, rel=1e-10)
    theta, s = d.ritz()
    assert torch.allclose(
        d.residual_bounds(s),
        torch.linalg.norm(a @ (s.T @ q).T - (s.T @ q).T * theta, dim=0),
        atol=1e-11,
    )


def test_full_run_recovers_every_eigenvalue():
    eigenvalues = torch.linspace(-2, 5, 30, dtype=torch.float64)
    a = matrix_with_spectrum(eigenvalues.tolist())
    d = lanczos(lambda v: a @ v, start(30), 100)
    assert d.num_matvecs == 30  # capped at P
    assert torch.allclose(d.ritz()[0], eigenvalues, atol=1e-10)


def test_invariant_subspace_stops_without_generator_and_restarts_with_one():
    values = [3.0] * 5 + [1.0] * 5 + [-2.0] * 5
    a = matrix_with_spectrum(values)
    stopped = lanczos(lambda v: a @ v, start(15), 15)
    assert stopped.num_matvecs == 3  # three distinct eigenvalues
    assert stopped.residual_norm == 0.0
    assert torch.allclose(stopped.ritz()[0], torch.tensor([-2.0, 1.0, 3.0], dtype=torch.float64))
    full = lanczos(lambda v: a @ v, start(15), 15, generator=torch.Generator().manual_seed(0))
    assert full.num_matvecs == 15
    assert torch.allclose(
        full.ritz()[0], torch.tensor(sorted(values), dtype=torch.float64), atol=1e-10
    )
    assert torch.allclose(full.basis @ full.basis.T, torch.eye(15, dtype=torch.float64), atol=1e-12)


def test_stop_rule_is_called_after_each_step():
    a = matrix_with_spectrum(torch.linspace(0, 1, 20).tolist())
    seen = []
    d = lanczos(
        lambda v: a @ v,
        start(20),
        20,
        stop=lambda dec: seen.append(dec.num_matvecs) or len(seen) == 4,
    )
    assert seen == [1, 2, 3, 4]
    assert d.num_matvecs == 4


def test_extreme_eigenpairs_both_ends_with_known_spectrum():
    eigenvalues = [10.0, 7.0, 5.0, *torch.linspace(-0.5, 0.5, 94).tolist(), -3.0, -4.0, -6.0]
    a = matrix_with_spectrum(eigenvalues)
    op = DenseOperator(a)
    found = extreme_eigenpairs(
        op.matvec,
        start(100),
        num_largest=3,
        num_smallest=2,
        max_steps=100,
        tol=1e-8,
        generator=torch.Generator().manual_seed(0),
    )
    assert found.converged
    assert found.num_matvecs == op.num_matvecs < 100
    assert torch.allclose(
        found.largest.values, torch.tensor([10.0, 7.0, 5.0], dtype=torch.float64), atol=1e-12
    )
    assert torch.allclose(
        found.smallest.values, torch.tensor([-6.0, -4.0], dtype=torch.float64), atol=1e-12
    )
    for pairs in (found.largest, found.smallest):
        v = pairs.vectors
        assert torch.allclose(torch.linalg.norm(v, dim=1), torch.ones(len(v), dtype=torch.float64))
        residual = torch.linalg.norm(v @ a - pairs.values[:, None] * v, dim=1)
        assert torch.all(residual <= 1e-8 * 10 * 1.01)
        assert torch.allclose(residual, pairs.residuals, atol=1e-10)


def test_repeated_top_eigenvalue_is_returned_with_its_multiplicity():
    a = matrix_with_spectrum([4.0, 4.0, 4.0, 1.0, 0.5, 0.0, -1.0, 2.0])
    found = extreme_eigenpairs(
        lambda v: a @ v,
        start(8),
        num_largest=4,
        num_smallest=0,
        max_steps=8,
        tol=1e-10,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.allclose(
        found.largest.values, torch.tensor([4.0, 4.0, 4.0, 2.0], dtype=torch.float64), atol=1e-10
    )


def test_not_converged_within_max_steps_is_reported():
    a = matrix_with_spectrum(torch.linspace(0, 1, 200).tolist())
    found = extreme_eigenpairs(
        lambda v: a @ v,
        start(200),
        num_largest=1,
        num_smallest=0,
        max_steps=5,
        tol=1e-12,
        generator=torch.Generator().manual_seed(0),
    )
    assert not found.converged
    assert found.num_matvecs == 5
