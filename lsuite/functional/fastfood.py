"""The Fastfood transform H G Pi H B, with a fast Walsh-Hadamard transform, in O(L) memory.

Le, Sarlos and Smola 2013, "Fastfood: approximating kernel expansions in loglinear time"; used
as a random projection for training in a low-dimensional subspace by Li et al. 2018, "Measuring
the intrinsic dimension of objective landscapes".
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lsuite.errors import require

_MAX_BITS = 7  # Hadamard factors of at most 128 x 128


@functools.lru_cache(maxsize=64)
def _hadamard_matrix(bits: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    matrix = torch.ones(1, 1, device=device, dtype=dtype)
    two = torch.tensor([[1.0, 1.0], [1.0, -1.0]], device=device, dtype=dtype)
    for _ in range(bits):
        matrix = torch.kron(matrix, two)
    return matrix


def _factor_bits(bits: int) -> list[int]:
    parts = max(1, math.ceil(bits / _MAX_BITS))
    return [bits // parts + (1 if i < bits % parts else 0) for i in range(parts)]


def hadamard_transform(x: Tensor) -> Tensor:
    """Return ``x @ H`` for the ``(L, L)`` Sylvester-Hadamard matrix ``H`` (entries +-1).

    ``H`` is symmetric and ``H @ H = L * I``. ``H`` is the Kronecker product of Sylvester
    matrices of at most 128 x 128, applied one after the other (``O(L log L)`` time for bounded
    factors, ``O(L)`` memory per row); the gradient is the same transform.

    Args:
        x: ``(..., L)`` with ``L`` a power of two.

    Returns:
        ``(..., L)``, the transform along the last dimension (natural, Sylvester order: that of
        ``scipy.linalg.hadamard``).

    Raises:
        ConfigError: when ``L`` is not a power of two.
    """
    n = x.shape[-1]
    require(n >= 1 and n & (n - 1) == 0, "x.shape[-1]", n, "a power of two")
    lead = x.shape[:-1]
    # H_L is the Kronecker product of smaller Sylvester matrices, one per group of index bits:
    # apply each along its axis of the (rows, n_1, ..., n_r) row-major view. The first and last
    # axes are plain matrix products, a middle one a batched product with the factor broadcast
    # (no transposed copies; 10-40% faster than transposing on a CPU, the same values).
    y = x.reshape(-1, n)
    before, after = y.shape[0], n
    for bits in _factor_bits(n.bit_length() - 1):
        size = 1 << bits
        after //= size
        factor = _hadamard_matrix(bits, x.device, x.dtype)
        if after == 1:
            y = y.reshape(-1, size) @ factor
        elif before == 1:
            y = factor @ y.reshape(size, after)
        else:
            y = factor @ y.reshape(before, size, after)
        before *= size
    return y.reshape(*lead, n)


@dataclass(frozen=True)
class FastfoodFactors:
    """The random diagonal and permutation factors of one Fastfood transform.

    Attributes:
        signs: ``(L,)`` random +-1 (``B``).
        permutation: ``(L,)`` a random permutation of ``0..L-1`` (``Pi``).
        gaussian: ``(L,)`` standard normal entries (``G``).
        out_features: ``D <= L``, the rows kept.
    """

    signs: Tensor
    permutation: Tensor
    gaussian: Tensor
    out_features: int

    @functools.cached_property
    def inverse_permutation(self) -> Tensor:
        """``(L,)`` the inverse of `permutation` (the gather that is its transpose)."""
        inverse = torch.empty_like(self.permutation)
        inverse[self.permutation] = torch.arange(self.size, device=self.permutation.device)
        return inverse

    @functools.cached_property
    def norm(self) -> Tensor:
        """``sqrt(D * |G|^2)``, 0-dim: the scale that makes the columns unit-norm."""
        return torch.sqrt(self.out_features * self.gaussian.pow(2).sum())

    @functools.cached_property
    def scaled_gaussian(self) -> Tensor:
        """``(L,)`` `gaussian` divided by `norm`: ``G`` and the scale in one diagonal."""
        return self.gaussian / self.norm

    def block_permutation(self, block: int) -> Tensor:
        """Return `permutation` modulo ``block`` (cached per ``block``).

        Gathering one period of a ``block``-periodic vector with it equals gathering the whole
        vector with `permutation`.

        Args:
            block: the period, a power of two ``<= L``.

        Returns:
            ``(L,)`` indices in ``0..block-1``.
        """
        cache = self.__dict__.setdefault("_block_permutations", {})
        if block not in cache:
            cache[block] = self.permutation % block
        return cache[block]

    @property
    def size(self) -> int:
        """``L``, the power of two the transform works in."""
        return int(self.signs.numel())

    def to(self, device: torch.device | str, dtype: torch.dtype) -> FastfoodFactors:
        """Return the factors on ``device``, the float ones in ``dtype``."""
        return FastfoodFactors(
            self.signs.to(device, dtype),
            self.permutation.to(device),
            self.gaussian.to(device, dtype),
            self.out_features,
        )


def fastfood_factors(
    in_features: int, out_features: int, generator: torch.Generator
) -> FastfoodFactors:
    """Draw the factors of a Fastfood map from ``in_features`` to ``out_features`` dimensions.

    ``L`` is the smallest power of two ``>= max(in_features, out_features)``.

    Args:
        in_features: ``d``, the subspace dimension (>= 1).
        out_features: ``D``, the dimension mapped into (>= 1).
        generator: a CPU generator; the only source of randomness.

    Returns:
        The factors, in float64 on the CPU.
    """
    require(in_features >= 1, "in_features", in_features, "an int >= 1")
    require(out_features >= 1, "out_features", out_features, "an int >= 1")
    size = 1 << max(0, math.ceil(math.log2(max(in_features, out_features))))
    signs = torch.randint(0, 2, (size,), generator=generator).double() * 2 - 1
    permutation = torch.randperm(size, generator=generator)
    gaussian = torch.randn(size, generator=generator, dtype=torch.float64)
    return FastfoodFactors(signs, permutation, gaussian, out_features)


def fastfood(z: Tensor, factors: FastfoodFactors) -> Tensor:
    """Return ``P @ z`` for the Fastfood matrix ``P = (H G Pi H B)[:D, :d] / sqrt(D * |G|^2)``.

    ``z`` is zero-padded to ``L`` entries, multiplied by ``B``, transformed by ``H``, permuted,
    scaled by ``G``, transformed again and cut to its first ``D`` entries. The scale makes every
    column of ``P`` unit-norm in expectation, exactly when ``D = L`` (then the ``L`` columns of
    the full ``(L, L)`` matrix all have norm 1; with ``|G_i| = 1`` for all ``i`` the full matrix
    is orthogonal). The gradient is `fastfood_transpose` (one autograd node each way, and
    differentiable again).

    Args:
        z: ``(..., d)`` coordinates in the subspace, ``d <= L``.
        factors: from `fastfood_factors`, on ``z``'s device and in its dtype.

    Returns:
        ``(..., D)``.
    """
    return _Fastfood.apply(z, factors)


def fastfood_transpose(y: Tensor, factors: FastfoodFactors, dim: int) -> Tensor:
    """Return ``P^T @ y`` for the Fastfood matrix ``P`` of `fastfood` with ``d = dim`` columns.

    Args:
        y: ``(..., D)``.
        factors: from `fastfood_factors`, on ``y``'s device and in its dtype.
        dim: ``d``, the subspace dimension (``<= L``).

    Returns:
        ``(..., d)``.
    """
    return _FastfoodTranspose.apply(y, factors, dim)


def _block(dim: int) -> int:
    """``m``, the smallest power of two ``>= dim``."""
    return 1 << max(0, (dim - 1).bit_length())


def fastfood_no_grad(z: Tensor, factors: FastfoodFactors) -> Tensor:
    """Return ``P @ z`` of `fastfood` as plain tensor operations (for an autograd node's body).

    Args:
        z: ``(..., d)``.
        factors: from `fastfood_factors`, on ``z``'s device and in its dtype.

    Returns:
        ``(..., D)``, a fresh tensor (with autograd on, one graph node per operation;
        `fastfood` is one node).
    """
    block = _block(z.shape[-1])
    # z is zero past its first d entries, so H (B z) is H_m (B z)[:m] repeated L / m times (m:
    # the smallest power of two >= d; the Sylvester matrix H_L is H_(L/m) kron H_m and the first
    # column of H_(L/m) is all ones): an m-point transform instead of an L-point one, and the
    # permutation of the repeated vector is a gather from one period
    # every intermediate is a fresh tensor of this call, so the diagonal factors multiply in
    # place (no new (..., L) tensor per factor; ~5% of the transform on the digits MLP)
    padded = torch.nn.functional.pad(z, (0, block - z.shape[-1]))
    x = hadamard_transform(padded.mul_(factors.signs[:block]))
    permuted = x.index_select(-1, factors.block_permutation(block))
    # the scale folded into G: H (G / n) x = (H G x) / n, one pass over L entries instead of two
    return hadamard_transform(permuted.mul_(factors.scaled_gaussian))[..., : factors.out_features]


def fastfood_transpose_no_grad(y: Tensor, factors: FastfoodFactors, dim: int) -> Tensor:
    """Return ``P^T @ y`` of `fastfood_transpose` as plain tensor operations.

    The steps of `fastfood_no_grad` reversed.

    Args:
        y: ``(..., D)``.
        factors: from `fastfood_factors`, on ``y``'s device and in its dtype.
        dim: ``d``, the subspace dimension (``<= L``).

    Returns:
        ``(..., d)``, a fresh tensor.
    """
    size, block = factors.size, _block(dim)
    x = torch.nn.functional.pad(y, (0, size - factors.out_features))
    x = hadamard_transform(x).mul_(factors.scaled_gaussian)
    x = x.index_select(-1, factors.inverse_permutation)
    # the transpose of repeating one period L / m times is the sum of the periods
    x = x.view(*x.shape[:-1], size // block, block).sum(dim=-2)
    return hadamard_transform(x).mul_(factors.signs[:block])[..., :dim]


class _Fastfood(torch.autograd.Function):
    """``P @ z``; its gradient is `_FastfoodTranspose`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z: Tensor, factors: FastfoodFactors) -> Tensor:
        return fastfood_no_grad(z, factors)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        ctx.factors, ctx.dim = inputs[1], inputs[0].shape[-1]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple:
        if torch.is_grad_enabled():  # create_graph: the gradient must be differentiable again
            return _FastfoodTranspose.apply(grad, ctx.factors, ctx.dim), None
        return fastfood_transpose_no_grad(grad, ctx.factors, ctx.dim), None


class _FastfoodTranspose(torch.autograd.Function):
    """``P^T @ y``; its gradient is `_Fastfood`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(y: Tensor, factors: FastfoodFactors, dim: int) -> Tensor:
        return fastfood_transpose_no_grad(y, factors, dim)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        ctx.factors = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple:
        if torch.is_grad_enabled():
            return _Fastfood.apply(grad, ctx.factors), None, None
        return fastfood_no_grad(grad, ctx.factors), None, None
