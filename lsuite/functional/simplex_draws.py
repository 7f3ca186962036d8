"""Draws of random points of a simplex, one per training step of a subspace."""

from __future__ import annotations

import torch
from torch import Tensor


def sample_simplex(num_vertices: int, num_groups: int, generator: torch.Generator) -> Tensor:
    """Draw ``num_groups`` points uniformly from the simplex (Dirichlet(1, ..., 1)).

    For two vertices a point is ``(1 - alpha, alpha)`` with ``alpha ~ U(0, 1)``.

    Args:
        num_vertices: ``K`` (>= 2).
        num_groups: ``G``, independent draws (one per layer for layerwise sampling).
        generator: a CPU generator.

    Returns:
        ``(G, K)`` barycentric coordinates (non-negative, rows sum to 1), float64.
    """
    exponential = -torch.log1p(-torch.rand(num_groups, num_vertices, generator=generator).double())
    return exponential / exponential.sum(dim=1, keepdim=True)
