"""The interface of a symmetric linear operator on flat vectors, and a dense implementation."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class SymmetricOperator(Protocol):
    """A symmetric ``(P, P)`` operator known through its products (e.g. a Hessian).

    Attributes:
        size: dimension ``P``.
        dtype: dtype of vectors.
        device: device of vectors.
        num_matvecs: products computed so far.
    """

    size: int
    dtype: torch.dtype
    device: torch.device
    num_matvecs: int

    def matvec(self, v: Tensor) -> Tensor:
        """Return ``A v`` for ``v`` of shape ``(P,)``."""
        ...

    def matmat(self, vectors: Tensor) -> Tensor:
        """Return the rows ``A v_i`` for ``(K, P)`` rows ``v_i``."""
        ...


class DenseOperator:
    """A symmetric matrix held in memory, as a `SymmetricOperator` (for tests and small problems).

    Args:
        matrix: ``(P, P)`` symmetric matrix.
    """

    def __init__(self, matrix: Tensor) -> None:
        self.matrix = matrix
        self.size = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device
        self.num_matvecs = 0

    def matvec(self, v: Tensor) -> Tensor:
        """Return ``A v`` for ``v`` of shape ``(P,)``."""
        self.num_matvecs += 1
        return self.matrix @ v

    def matmat(self, vectors: Tensor) -> Tensor:
        """Return the rows ``A v_i`` for ``(K, P)`` rows ``v_i``."""
        self.num_matvecs += vectors.shape[0]
        return vectors @ self.matrix
