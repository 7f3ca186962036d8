"""Draws of random points of a simplex, one per training step of a subspace."""

from __future__ import annotations

import math

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


def sample_simplex_point(num_vertices: int, generator: torch.Generator) -> list[float]:
    """Draw one point like ``sample_simplex(num_vertices, 1, generator)[0]``, as Python floats.

    The same uniform draws, transformed in plain arithmetic (a training step's draw then costs one
    tensor operation); equal to `sample_simplex`'s row to rounding.

    Args:
        num_vertices: ``K`` (>= 2).
        generator: a CPU generator.

    Returns:
        ``K`` barycentric coordinates (non-negative, summing to 1).
    """
    uniform = torch.rand(num_vertices, generator=generator).tolist()
    exponential = [-math.log1p(-u) for u in uniform]
    total = sum(exponential)
    return [e / total for e in exponential]
