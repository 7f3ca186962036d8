"""Extreme eigenpairs of a symmetric operator by Lanczos with a residual stopping rule."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lsuite.linalg.lanczos import LanczosDecomposition, MatVec, lanczos


@dataclass(frozen=True)
class Eigenpairs:
    """Ritz pairs from one end of the spectrum.

    Attributes:
        values: ``(K,)`` float64 eigenvalues; descending for the largest end, ascending (most
            negative first) for the smallest end.
        vectors: ``(K, P)`` unit eigenvectors as rows, in the dtype and device of the operator.
        residuals: ``(K,)`` float64 ``||A v_i - lambda_i v_i||`` (the Lanczos bound, exact in exact
            arithmetic with full reorthogonalisation).
    """

    values: Tensor
    vectors: Tensor
    residuals: Tensor


@dataclass(frozen=True)
class ExtremeEigenpairs:
    """The largest and smallest eigenpairs found by one Lanczos run.

    Attributes:
        largest: the ``num_largest`` largest eigenpairs, descending.
        smallest: the ``num_smallest`` smallest eigenpairs, ascending.
        num_matvecs: products with the operator.
        converged: whether every requested residual is below ``tol`` times the spectral norm.
    """

    largest: Eigenpairs
    smallest: Eigenpairs
    num_matvecs: int
    converged: bool


def extreme_eigenpairs(
    matvec: MatVec,
    start: Tensor,
    *,
    num_largest: int,
    num_smallest: int,
    max_steps: int,
    tol: float,
    generator: torch.Generator,
) -> ExtremeEigenpairs:
    """Return the algebraically largest and smallest eigenpairs of a symmetric ``A``.

    Lanczos runs from ``start`` until every requested Ritz pair has a residual
    ``||A y - theta y|| <= tol * max_i |theta_i|`` (relative to the spectral norm estimate, so
    eigenvalues near zero are handled), or until ``max_steps`` products. The eigenvalue error is
    then about ``residual**2 / gap``. After an invariant subspace (e.g. a matrix with few distinct
    eigenvalues) Lanczos restarts from a random vector drawn from ``generator`` and the new block
    runs at least as many steps as pairs requested, so exactly repeated eigenvalues are found
    with their multiplicity in practice (no single-vector Krylov method can guarantee it).

    Args:
        matvec: product with ``A``, ``(P,) -> (P,)``.
        start: ``(P,)`` start vector.
        num_largest: how many of the largest eigenpairs to return (may be 0).
        num_smallest: how many of the smallest eigenpairs to return (may be 0).
        max_steps: most Lanczos steps.
        tol: relative residual tolerance.
        generator: CPU generator for restart vectors.

    Returns:
        The eigenpairs from both ends and the cost.
    """
    size = start.numel()
    wanted = num_largest + num_smallest

    def done(decomposition: LanczosDecomposition) -> bool:
        steps = decomposition.num_matvecs
        if steps < min(wanted, size):
            return False
        if steps < size and (decomposition.invariant or decomposition.block_steps < wanted):
            # After an invariant subspace, give the restarted block the chance to find further
            # copies of repeated eigenvalues before accepting the Ritz values.
            return False
        theta, s = decomposition.ritz()
        bounds = decomposition.residual_bounds(s)[_ends(steps, num_largest, num_smallest)]
        return bool((bounds <= tol * theta.abs().max()).all())

    decomposition = lanczos(matvec, start, max_steps, generator=generator, stop=done)
    theta, s = decomposition.ritz()
    bounds = decomposition.residual_bounds(s)
    steps = decomposition.num_matvecs
    top = torch.arange(steps - 1, steps - 1 - min(num_largest, steps), -1)
    bottom = torch.arange(min(num_smallest, steps))
    converged = bool(
        (bounds[_ends(steps, num_largest, num_smallest)] <= tol * theta.abs().max()).all()
    )
    return ExtremeEigenpairs(
        largest=_pairs(decomposition, theta, s, bounds, top),
        smallest=_pairs(decomposition, theta, s, bounds, bottom),
        num_matvecs=steps,
        converged=converged and steps >= min(wanted, size),
    )


def _ends(steps: int, num_largest: int, num_smallest: int) -> Tensor:
    """Indices (into ascending Ritz values) of the requested pairs."""
    top = torch.arange(max(steps - num_largest, 0), steps)
    bottom = torch.arange(min(num_smallest, steps))
    return torch.unique(torch.cat([bottom, top]))


def _pairs(
    decomposition: LanczosDecomposition, theta: Tensor, s: Tensor, bounds: Tensor, index: Tensor
) -> Eigenpairs:
    basis = decomposition.basis
    vectors = s[:, index].T.to(dtype=basis.dtype, device=basis.device) @ basis  # (K, P)
    return Eigenpairs(values=theta[index], vectors=vectors, residuals=bounds[index])
