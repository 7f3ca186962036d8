"""The volume of a simplex of points in weight space, and its logarithm (SPRO's regulariser)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lsuite.errors import require


def simplex_log_volume(vertices: Tensor) -> Tensor:
    """Return the log of the ``(V-1)``-dimensional volume of the simplex with ``V`` vertices.

    ``vol = sqrt(det(G)) / (V-1)!`` with ``G = E E^T`` the Gram matrix of the edges
    ``E = vertices[1:] - vertices[0]``; this equals the Cayley-Menger volume Benton et al.
    maximise (Benton, Maddox, Lotfi, Wilson 2021, "Loss Surface Simplexes for Mode Connecting
    Volumes and Fast Ensembling": SPRO's loss is ``CE - lambda * log vol``). Computed in float64;
    differentiable with respect to every vertex.

    Args:
        vertices: ``(V, P)`` flat vertices, ``V >= 2``.

    Returns:
        ``()`` log-volume in the input's dtype (``-inf`` for a degenerate simplex).
    """
    require(
        vertices.ndim == 2 and vertices.shape[0] >= 2,
        "vertices",
        tuple(vertices.shape),
        "a (V, P) stack with V >= 2",
    )
    edges = (vertices[1:] - vertices[:1]).double()
    gram = edges @ edges.T
    dims = vertices.shape[0] - 1
    log_volume = 0.5 * torch.logdet(gram) - math.lgamma(dims + 1)
    return log_volume.to(vertices.dtype)


def simplex_volume(vertices: Tensor) -> Tensor:
    """Return the ``(V-1)``-dimensional volume of the simplex (see `simplex_log_volume`)."""
    return torch.exp(simplex_log_volume(vertices))
