"""Random projections: unit-norm columns, blocks per layer, determinism, device and dtype."""

import math

import pytest
import torch

from lsuite.errors import ConfigError
from lsuite.functional.random_projection import KINDS, RandomProjection


@pytest.mark.parametrize("kind", KINDS)
def test_columns_have_unit_norm(kind):
    # D = 128 = L, so the Fastfood columns are exactly unit-norm too.
    p = RandomProjection(kind, [100, 20, 8], 16, seed=0).matrix()
    assert p.shape == (128, 16)
    torch.testing.assert_close(p.norm(dim=0), torch.ones(16, dtype=torch.float64))


@pytest.mark.parametrize("kind", KINDS)
def test_per_layer_blocks_are_separately_normalised(kind):
    p = RandomProjection(kind, [64, 32, 32], 8, seed=0, per_layer=True).matrix()
    for block in (p[:64], p[64:96], p[96:]):
        torch.testing.assert_close(block.norm(dim=0), torch.ones(8, dtype=torch.float64))
    # blocks are independent draws, not copies
    assert not torch.allclose(p[64:96], p[96:])


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_map_other_seed_other_map(kind):
    a = RandomProjection(kind, [300], 10, seed=5).matrix()
    assert torch.equal(a, RandomProjection(kind, [300], 10, seed=5).matrix())
    assert not torch.allclose(a, RandomProjection(kind, [300], 10, seed=6).matrix())


def test_sparse_density_is_about_one_over_sqrt_d():
    p = RandomProjection("sparse", [10000], 50, seed=0).matrix()
    density = (p != 0).double().mean().item()
    assert density == pytest.approx(1 / math.sqrt(10000), rel=0.1)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_matches_float64_and_is_linear(kind):
    projection = RandomProjection(kind, [40, 9], 7, seed=1)
    z = torch.randn(7, dtype=torch.float64)
    exact = projection.matrix() @ z
    torch.testing.assert_close(projection(z), exact)
    torch.testing.assert_close(projection(z.float()), exact.float(), rtol=1e-5, atol=1e-6)
    (grad,) = torch.autograd.grad(projection(z.requires_grad_()).sum(), z)
    torch.testing.assert_close(grad, projection.matrix().sum(dim=0))


@pytest.mark.parametrize("per_layer", [False, True], ids=["one block", "per layer"])
@pytest.mark.parametrize("kind", KINDS)
def test_transpose_is_the_matrix_transpose(kind, per_layer):
    projection = RandomProjection(kind, [40, 9, 15], 7, seed=2, per_layer=per_layer)
    y = torch.randn(64, dtype=torch.float64)
    expected = projection.matrix().T @ y
    torch.testing.assert_close(projection.transpose(y), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_layer", [False, True], ids=["one block", "per layer"])
@pytest.mark.parametrize("kind", KINDS)
def test_without_the_node_same_values_and_inputs_untouched(kind, per_layer):
    # node=False (the body of RandomSubspace's own autograd node) multiplies in place: only
    # its own intermediates, never the input
    projection = RandomProjection(kind, [40, 9, 15], 7, seed=2, per_layer=per_layer)
    z, y = torch.randn(7, dtype=torch.float64), torch.randn(64, dtype=torch.float64)
    z0, y0 = z.clone(), y.clone()
    assert torch.equal(projection(z, node=False), projection(z))
    assert torch.equal(projection.transpose(y, node=False), projection.transpose(y))
    assert torch.equal(z, z0) and torch.equal(y, y0)


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="projection: got 'gauss'"):
        RandomProjection("gauss", [10], 2, seed=0)
    with pytest.raises(ConfigError, match="dim: got 0"):
        RandomProjection("dense", [10], 0, seed=0)
