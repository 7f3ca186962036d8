"""Fixed random maps P from a d-dimensional subspace into weight space: dense, sparse, Fastfood.

Li, Farkhoor, Liu and Yosinski 2018, "Measuring the intrinsic dimension of objective
landscapes": the network is trained at ``w = w0 + P z`` with ``P`` fixed and only ``z`` trained.
Every column of ``P`` (of each block) has unit norm (exactly for ``dense`` and ``sparse``, in
expectation for ``fastfood``). The factors are drawn once, on the CPU, from a seed, so every
rank and every reload gets the same ``P`` and nothing needs saving.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

from lsuite.errors import require
from lsuite.functional.fastfood import (
    FastfoodFactors,
    fastfood,
    fastfood_factors,
    fastfood_no_grad,
    fastfood_transpose,
    fastfood_transpose_no_grad,
)

Kind = Literal["dense", "sparse", "fastfood"]
KINDS: tuple[str, ...] = get_args(Kind)


class _Dense:
    """``(D, d)`` Gaussian entries, columns normalised; memory ``O(D d)``."""

    def __init__(self, rows: int, dim: int, generator: torch.Generator) -> None:
        matrix = torch.randn(rows, dim, generator=generator, dtype=torch.float64)
        self.matrix = matrix / matrix.norm(dim=0, keepdim=True)

    def to(self, device: torch.device, dtype: torch.dtype) -> _Dense:
        out = object.__new__(_Dense)
        out.matrix = self.matrix.to(device, dtype)
        return out

    def __call__(self, z: Tensor, node: bool = True) -> Tensor:
        return self.matrix @ z

    def transpose(self, y: Tensor, node: bool = True) -> Tensor:
        return self.matrix.T @ y


class _Sparse:
    """Very sparse +-1 entries (density ``1 / sqrt(D)``, Li, Hastie and Church 2006), normalised.

    Memory ``O(d sqrt(D))``. Every column gets at least one entry.
    """

    def __init__(self, rows: int, dim: int, generator: torch.Generator) -> None:
        extra = max(0, round(dim * math.sqrt(rows)) - dim)
        cols = torch.cat([torch.arange(dim), torch.randint(0, dim, (extra,), generator=generator)])
        rows_index = torch.randint(0, rows, (cols.numel(),), generator=generator)
        signs = torch.randint(0, 2, (cols.numel(),), generator=generator).double() * 2 - 1
        # duplicate positions are summed
        flat, inverse = torch.unique(rows_index * dim + cols, return_inverse=True)
        values = torch.zeros(flat.numel(), dtype=torch.float64).index_add_(0, inverse, signs)
        index = torch.stack([flat // dim, flat % dim])
        norms = torch.zeros(dim, dtype=torch.float64).index_add_(0, index[1], values.pow(2))
        self.rows, self.cols = index[0], index[1]
        self.values = values / norms.clamp_min(1e-300).sqrt()[index[1]]
        self.size, self.dim = rows, dim

    def to(self, device: torch.device, dtype: torch.dtype) -> _Sparse:
        out = object.__new__(_Sparse)
        out.rows, out.cols = self.rows.to(device), self.cols.to(device)
        out.values, out.size, out.dim = self.values.to(device, dtype), self.size, self.dim
        return out

    def __call__(self, z: Tensor, node: bool = True) -> Tensor:
        out = torch.zeros(self.size, device=z.device, dtype=z.dtype)
        return out.index_add(0, self.rows, self.values * z[self.cols])

    def transpose(self, y: Tensor, node: bool = True) -> Tensor:
        out = torch.zeros(self.dim, device=y.device, dtype=y.dtype)
        return out.index_add(0, self.cols, self.values * y[self.rows])


class _Fastfood:
    """The Fastfood transform; memory ``O(D)``, time ``O(L log L)``."""

    def __init__(self, rows: int, dim: int, generator: torch.Generator) -> None:
        self.factors: FastfoodFactors = fastfood_factors(dim, rows, generator)
        self.dim = dim

    def to(self, device: torch.device, dtype: torch.dtype) -> _Fastfood:
        out = object.__new__(_Fastfood)
        out.factors, out.dim = self.factors.to(device, dtype), self.dim
        return out

    def __call__(self, z: Tensor, node: bool = True) -> Tensor:
        return fastfood(z, self.factors) if node else fastfood_no_grad(z, self.factors)

    def transpose(self, y: Tensor, node: bool = True) -> Tensor:
        if node:
            return fastfood_transpose(y, self.factors, self.dim)
        return fastfood_transpose_no_grad(y, self.factors, self.dim)


_BLOCKS = {"dense": _Dense, "sparse": _Sparse, "fastfood": _Fastfood}


class RandomProjection:
    """A fixed random linear map ``z -> P z`` from ``R^d`` into ``R^D``, ``D = sum(sizes)``.

    With ``per_layer`` each entry of ``sizes`` (one per parameter tensor) gets its own block
    ``P_l`` of shape ``(D_l, d)`` (all fed the same ``z``); otherwise one block spans all ``D``.

    Args:
        kind: ``dense`` (Gaussian, ``O(D d)`` memory), ``sparse`` (``O(d sqrt(D))``) or
            ``fastfood`` (``O(D)``).
        sizes: the number of entries of each parameter tensor, in the order of the flattened
            weight vector.
        dim: ``d`` (>= 1).
        seed: seed of the CPU generator the factors are drawn from.
        per_layer: one block per entry of ``sizes`` instead of one for all.

    Raises:
        ConfigError: for an unknown ``kind``, ``dim < 1`` or empty ``sizes``.
    """

    def __init__(
        self, kind: Kind, sizes: Sequence[int], dim: int, seed: int, per_layer: bool = False
    ) -> None:
        require(kind in _BLOCKS, "projection", kind, f"one of {', '.join(KINDS)}")
        require(isinstance(dim, int) and dim >= 1, "dim", dim, "an int >= 1")
        require(len(sizes) >= 1 and min(sizes) >= 1, "sizes", list(sizes), "sizes >= 1")
        generator = torch.Generator().manual_seed(int(seed))
        blocks = list(sizes) if per_layer else [sum(sizes)]
        self._sizes = blocks
        self.kind, self.dim, self.out_features = kind, dim, sum(sizes)
        self._blocks = [_BLOCKS[kind](rows, dim, generator) for rows in blocks]
        self._cache: dict[tuple[torch.device, torch.dtype], list] = {}

    def __call__(self, z: Tensor, node: bool = True) -> Tensor:
        """Return ``P @ z``: ``(D,)`` from ``(d,)``, on ``z``'s device and in its dtype.

        ``node=False`` skips Fastfood's autograd node (~60 us a call on a CPU), for a caller
        that runs with autograd off, such as the forward of its own node; the result is fresh.
        """
        blocks = self._on(z)
        if len(blocks) == 1:
            return blocks[0](z, node)
        return torch.cat([block(z, node) for block in blocks])

    def transpose(self, y: Tensor, node: bool = True) -> Tensor:
        """Return ``P^T @ y``: ``(d,)`` from ``(D,)``, on ``y``'s device and in its dtype.

        ``node``: as in `__call__`.
        """
        blocks = self._on(y)
        if len(blocks) == 1:
            return blocks[0].transpose(y, node)
        parts = torch.split(y, self._sizes)
        columns = [b.transpose(part, node) for b, part in zip(blocks, parts, strict=True)]
        return torch.stack(columns).sum(dim=0)

    def _on(self, like: Tensor) -> list:
        """The blocks on ``like``'s device and in its dtype (the last such copy is kept)."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache = {key: [block.to(like.device, like.dtype) for block in self._blocks]}
        return self._cache[key]

    def matrix(self) -> Tensor:
        """Return ``P`` as a dense ``(D, d)`` float64 tensor (for tests and small ``D``)."""
        eye = torch.eye(self.dim, dtype=torch.float64)
        return torch.stack([self(eye[i]) for i in range(self.dim)], dim=1)
