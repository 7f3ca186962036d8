"""The Walsh-Hadamard and Fastfood transforms against explicit matrices in float64."""

import math

import pytest
import scipy.linalg
import torch

from lsuite.errors import ConfigError
from lsuite.functional.fastfood import (
    FastfoodFactors,
    fastfood,
    fastfood_factors,
    fastfood_transpose,
    hadamard_transform,
)


@pytest.mark.parametrize("size", [1, 2, 8, 128, 512, 2048])
def test_hadamard_equals_sylvester_matrix(size):
    x = torch.randn(3, size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    matrix = torch.tensor(scipy.linalg.hadamard(size), dtype=torch.float64)
    torch.testing.assert_close(hadamard_transform(x), x @ matrix, rtol=0, atol=1e-10)


def test_hadamard_gradient_is_the_transform():
    x = torch.randn(64, dtype=torch.float64, requires_grad=True)
    v = torch.randn(64, dtype=torch.float64)
    (grad,) = torch.autograd.grad(hadamard_transform(x), x, v)
    torch.testing.assert_close(grad, hadamard_transform(v))


def test_hadamard_refuses_other_lengths():
    with pytest.raises(ConfigError, match="power of two"):
        hadamard_transform(torch.zeros(6))


def _explicit(factors: FastfoodFactors, dim: int) -> torch.Tensor:
    size = factors.size
    h = torch.tensor(scipy.linalg.hadamard(size), dtype=torch.float64)
    pi = torch.eye(size, dtype=torch.float64)[factors.permutation]  # (Pi x)_i = x_perm[i]
    full = h @ torch.diag(factors.gaussian) @ pi @ h @ torch.diag(factors.signs)
    scale = math.sqrt(factors.out_features * factors.gaussian.pow(2).sum().item())
    return full[: factors.out_features, :dim] / scale


@pytest.mark.parametrize(("dim", "out"), [(5, 100), (64, 64), (3, 1), (20, 7)])
def test_fastfood_equals_explicit_matrix(dim, out):
    factors = fastfood_factors(dim, out, torch.Generator().manual_seed(1))
    assert factors.size == 1 << math.ceil(math.log2(max(dim, out)))
    z = torch.randn(dim, dtype=torch.float64)
    torch.testing.assert_close(fastfood(z, factors), _explicit(factors, dim) @ z)


def _columns(factors: FastfoodFactors, dim: int) -> torch.Tensor:
    eye = torch.eye(dim, dtype=torch.float64)
    return torch.stack([fastfood(eye[i], factors) for i in range(dim)], dim=1)


def test_fastfood_is_orthogonal_with_unit_diagonal():
    """With |G_i| = 1 the full transform is orthogonal: P^T P = I exactly (float64)."""
    factors = fastfood_factors(256, 256, torch.Generator().manual_seed(2))
    unit = FastfoodFactors(
        factors.signs, factors.permutation, torch.ones(256, dtype=torch.float64), 256
    )
    p = _columns(unit, 256)
    torch.testing.assert_close(p.T @ p, torch.eye(256, dtype=torch.float64), rtol=0, atol=1e-12)


def test_fastfood_gaussian_columns_are_unit_norm_and_nearly_orthogonal():
    """With Gaussian G (D = L) every column has norm 1 exactly; off-diagonals ~ sqrt(2 / L)."""
    size = 1024
    factors = fastfood_factors(size, size, torch.Generator().manual_seed(3))
    p = _columns(factors, 64)
    gram = p.T @ p
    torch.testing.assert_close(gram.diag(), torch.ones(64, dtype=torch.float64), rtol=0, atol=1e-12)
    off = gram[~torch.eye(64, dtype=torch.bool)]
    rms = off.pow(2).mean().sqrt().item()
    assert 0.3 * math.sqrt(2 / size) < rms < 2 * math.sqrt(2 / size)
    assert abs(off.mean().item()) < 3 * rms / math.sqrt(off.numel())


def test_fastfood_factors_follow_the_seed():
    a = fastfood_factors(10, 300, torch.Generator().manual_seed(4))
    b = fastfood_factors(10, 300, torch.Generator().manual_seed(4))
    assert torch.equal(a.gaussian, b.gaussian) and torch.equal(a.permutation, b.permutation)
    assert sorted(a.permutation.tolist()) == list(range(512))
    assert set(a.signs.tolist()) == {-1.0, 1.0}


def _butterflies(x):
    """The textbook in-place fast Walsh-Hadamard transform, vectorised over stages."""
    n = x.shape[-1]
    y = x.reshape(-1, n)
    h = 1
    while h < n:
        y = y.view(y.shape[0], n // (2 * h), 2, h)
        y = torch.stack((y[:, :, 0] + y[:, :, 1], y[:, :, 0] - y[:, :, 1]), dim=2)
        h *= 2
    return y.reshape(x.shape)


@pytest.mark.parametrize("size", [1 << 15, 1 << 17])  # three factors: a middle axis
def test_hadamard_of_large_sizes_equals_butterflies(size):
    x = torch.randn(2, size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(hadamard_transform(x), _butterflies(x), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize(("dim", "out"), [(5, 100), (64, 64), (3, 1), (20, 7), (300, 1000)])
def test_fastfood_gradient_is_the_transpose(dim, out):
    """The closed-form backward (fastfood_transpose) equals P^T of the explicit matrix."""
    factors = fastfood_factors(dim, out, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(6)
    z = torch.randn(2, dim, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, out, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad(fastfood(z, factors), z, v)
    expected = v @ _explicit(factors, dim)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        fastfood_transpose(v, factors, dim), expected, rtol=1e-12, atol=1e-12
    )


def test_fastfood_second_derivatives_and_vmap():
    factors = fastfood_factors(6, 40, torch.Generator().manual_seed(7))
    z = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: fastfood(z, factors), (z,))
    assert torch.autograd.gradgradcheck(lambda z: fastfood(z, factors).pow(2), (z,))
    y = torch.randn(40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda y: fastfood_transpose(y, factors, 6).pow(2), (y,))
    batch = torch.randn(3, 6, dtype=torch.float64)
    torch.testing.assert_close(
        torch.func.vmap(lambda z: fastfood(z, factors))(batch), fastfood(batch, factors)
    )
