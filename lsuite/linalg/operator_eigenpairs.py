"""Extreme eigenpairs of a symmetric operator (a Hessian, say) by Lanczos, with their checks."""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import Tensor

from lsuite.errors import require
from lsuite.linalg.eigenpairs import ExtremeEigenpairs, extreme_eigenpairs
from lsuite.linalg.operator import SymmetricOperator

log = logging.getLogger(__name__)

End = Literal["largest", "smallest"]
Which = Literal["largest", "smallest", "both"]

WHICH = ("largest", "smallest", "both")
"""The values of `Which`."""


def default_max_iter(k: int) -> int:
    """Return the default Lanczos step limit for ``k`` eigenpairs per requested end."""
    return max(100, 10 * k)


def hessian_eigenpairs(
    operator: SymmetricOperator,
    k: int,
    *,
    generator: torch.Generator,
    which: End = "largest",
    max_iter: int | None = None,
    tol: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """Return ``k`` extreme eigenpairs of a symmetric operator by Lanczos.

    Lanczos (full reorthogonalisation) runs from a Gaussian start vector drawn from
    ``generator`` until every requested pair has ``||H v - lambda v|| <= tol * ||H||`` or
    ``max_iter`` products were used (a warning is logged then).

    Args:
        operator: e.g. a `HessianOperator`.
        k: number of eigenpairs, ``1 <= k <= P``.
        generator: CPU generator for the start vector.
        which: ``"largest"`` (algebraically largest) or ``"smallest"`` (most negative).
        max_iter: most Lanczos steps; ``max(100, 10 k)`` when None (capped at ``P``).
        tol: residual tolerance relative to the spectral norm.

    Returns:
        ``(values, vectors)``: ``(k,)`` float64 eigenvalues, descending for ``"largest"`` and
        ascending (most negative first) for ``"smallest"``; ``(k, P)`` unit eigenvectors as rows
        (sign arbitrary), in the operator's dtype.

    Raises:
        ConfigError: for ``k``, ``which``, ``max_iter`` or ``tol`` out of range.
    """
    check_eigen_arguments(k, max_iter, tol, operator.size)
    require(which in ("largest", "smallest"), "which", which, "one of ['largest', 'smallest']")
    found = solve_extreme(operator, k, which, max_iter, tol, generator)
    pairs = found.largest if which == "largest" else found.smallest
    return pairs.values, pairs.vectors


def solve_extreme(
    operator: SymmetricOperator,
    k: int,
    which: Which,
    max_iter: int | None,
    tol: float,
    generator: torch.Generator,
    warn: bool = True,
) -> ExtremeEigenpairs:
    """Return ``k`` eigenpairs at the ``which`` end(s) of ``operator`` from one Lanczos run.

    Args:
        operator: the symmetric operator.
        k: eigenpairs per requested end.
        which: ``"largest"``, ``"smallest"`` or ``"both"``.
        max_iter: most Lanczos steps; `default_max_iter` when None.
        tol: residual tolerance relative to the spectral norm.
        generator: CPU generator for the Gaussian start vector.
        warn: log a warning when the tolerance was not reached.

    Returns:
        The eigenpairs of both ends (an end not asked for is empty) and the cost.
    """
    start = torch.randn(operator.size, generator=generator, dtype=operator.dtype)
    found = extreme_eigenpairs(
        operator.matvec,
        start.to(operator.device),
        num_largest=k if which != "smallest" else 0,
        num_smallest=k if which != "largest" else 0,
        max_steps=max_iter if max_iter is not None else default_max_iter(k),
        tol=tol,
        generator=generator,
    )
    if warn and not found.converged:
        log.warning(
            "Hessian eigenpairs did not reach tol=%g in %d Lanczos steps; raise max_iter",
            tol,
            found.num_matvecs,
        )
    return found


def check_eigen_arguments(k: int, max_iter: int | None, tol: float, size: int | None) -> None:
    """Check ``k`` (at most ``size`` when known), ``max_iter`` (None or >= k) and ``tol`` (> 0).

    Args:
        k: eigenpairs per end.
        max_iter: most Lanczos steps, or None.
        tol: residual tolerance.
        size: the operator's dimension, or None when not known yet.

    Raises:
        ConfigError: for a value out of range, naming the argument.
    """
    int_k = isinstance(k, int) and not isinstance(k, bool)
    require(int_k and k >= 1, "k", k, "an int >= 1")
    if size is not None:
        require(k <= size, "k", k, f"at most the {size} parameters")
    require(
        max_iter is None
        or (isinstance(max_iter, int) and not isinstance(max_iter, bool) and max_iter >= k),
        "max_iter",
        max_iter,
        f"an int >= k ({k}) or null",
    )
    require(
        isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol > 0,
        "tol",
        tol,
        "a float > 0",
    )
