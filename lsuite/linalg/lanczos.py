"""Symmetric Lanczos with full reorthogonalisation on a matrix-vector product callable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

MatVec = Callable[[Tensor], Tensor]
"""``matvec(v) -> A v`` for a symmetric ``A``; ``(P,)`` in, ``(P,)`` out."""

StopRule = Callable[["LanczosDecomposition"], bool]
"""Called after every step with the decomposition so far; returns True to stop."""

_BREAKDOWN = 1e-10
"""Relative residual norm (to the largest coefficient seen) that marks an invariant subspace."""


@dataclass(frozen=True)
class LanczosDecomposition:
    """``A Q^T ≈ Q^T T + beta_m q_{m+1} e_m^T`` after ``m`` Lanczos steps.

    Attributes:
        alphas: ``(m,)`` diagonal of the tridiagonal ``T``, float64 on the CPU.
        betas: ``(m - 1,)`` off-diagonal of ``T``, float64 on the CPU; a zero marks a restart
            after an invariant subspace was found (``T`` is then block diagonal).
        basis: ``(m, P)`` orthonormal rows ``q_1 .. q_m`` in the dtype and device of ``A``.
        residual_norm: ``beta_m``, the norm of the part of ``A q_m`` outside the basis; 0 when
            the basis spans an invariant subspace.
        num_matvecs: products with ``A`` computed (``m``).
        invariant: whether the last step found an invariant subspace (``residual_norm`` is zero
            to rounding); Lanczos restarts or stops after such a step.
    """

    alphas: Tensor
    betas: Tensor
    basis: Tensor
    residual_norm: float
    num_matvecs: int
    invariant: bool = False

    @property
    def block_steps(self) -> int:
        """Steps since the last restart (all steps when there was none)."""
        restarts = torch.nonzero(self.betas == 0)
        return self.num_matvecs - (int(restarts[-1]) + 1 if len(restarts) else 0)

    def tridiagonal(self) -> Tensor:
        """Return ``T``, the ``(m, m)`` float64 symmetric tridiagonal matrix."""
        t = torch.diag(self.alphas)
        if self.betas.numel():
            t = t + torch.diag(self.betas, 1) + torch.diag(self.betas, -1)
        return t

    def ritz(self) -> tuple[Tensor, Tensor]:
        """Return the Ritz values and the eigenvectors of ``T``.

        Returns:
            ``(theta, S)``: ``(m,)`` Ritz values in ascending order and ``(m, m)`` float64
            eigenvectors of ``T`` as columns; Ritz vector ``i`` is ``S[:, i] @ basis``.
        """
        theta, s = torch.linalg.eigh(self.tridiagonal())
        return theta, s

    def residual_bounds(self, s: Tensor) -> Tensor:
        """Return ``||A y_i - theta_i y_i|| = beta_m |S[m - 1, i]|`` per Ritz pair, ``(m,)``."""
        return self.residual_norm * s[-1].abs()


def lanczos(
    matvec: MatVec,
    start: Tensor,
    max_steps: int,
    *,
    generator: torch.Generator | None = None,
    stop: StopRule | None = None,
) -> LanczosDecomposition:
    """Run Lanczos from ``start`` with full reorthogonalisation (two Gram-Schmidt passes).

    Every new vector is orthogonalised twice against the whole basis ("twice is enough"), so
    Ritz values carry no ghost copies. When the residual vanishes (an invariant subspace, e.g. a
    matrix with few distinct eigenvalues), Lanczos restarts from a random vector orthogonal to
    the basis if ``generator`` is given, so that repeated eigenvalues are found too; otherwise it
    stops there (the quadrature of ``start`` is then exact).

    Args:
        matvec: product with the symmetric ``A``.
        start: ``(P,)`` start vector (any nonzero norm); it fixes dtype and device.
        max_steps: most Lanczos steps (products with ``A``); at most ``P`` are taken.
        generator: CPU generator for restart vectors; no restart when None.
        stop: stopping rule checked after every step.

    Returns:
        The decomposition after the last step.
    """
    size = start.numel()
    steps = min(max_steps, size)
    basis = torch.zeros(steps, size, dtype=start.dtype, device=start.device)
    basis[0] = start / torch.linalg.vector_norm(start)
    alphas: list[float] = []
    betas: list[float] = []
    scale = 0.0
    residual_norm = 0.0
    for j in range(steps):
        w = matvec(basis[j])
        alpha = float(torch.dot(basis[j], w))
        alphas.append(alpha)
        w = w - alpha * basis[j]
        if j > 0:
            w = w - betas[-1] * basis[j - 1]
        w = _orthogonalise(w, basis[: j + 1])
        residual_norm = float(torch.linalg.vector_norm(w))
        scale = max(scale, abs(alpha), residual_norm)
        invariant = residual_norm <= _BREAKDOWN * scale
        decomposition = _decomposition(alphas, betas, basis[: j + 1], residual_norm, invariant)
        if j + 1 == steps or (stop is not None and stop(decomposition)):
            return decomposition
        if invariant:
            if generator is None:
                return _decomposition(alphas, betas, basis[: j + 1], 0.0, True)
            w = _orthogonalise(_random_like(start, generator), basis[: j + 1])
            basis[j + 1] = w / torch.linalg.vector_norm(w)
            betas.append(0.0)
        else:
            basis[j + 1] = w / residual_norm
            betas.append(residual_norm)
    return _decomposition(alphas, betas, basis, residual_norm, False)


def _orthogonalise(w: Tensor, basis: Tensor) -> Tensor:
    """Remove from ``w`` (``(P,)``) its components along the rows of ``basis`` (``(m, P)``)."""
    for _ in range(2):
        w = w - (basis @ w) @ basis
    return w


def _random_like(like: Tensor, generator: torch.Generator) -> Tensor:
    """Return a standard normal ``(P,)`` vector drawn on the CPU, moved to ``like``'s device."""
    return torch.randn(like.numel(), generator=generator, dtype=like.dtype).to(like.device)


def _decomposition(
    alphas: list[float], betas: list[float], basis: Tensor, residual_norm: float, invariant: bool
) -> LanczosDecomposition:
    return LanczosDecomposition(
        alphas=torch.tensor(alphas, dtype=torch.float64),
        betas=torch.tensor(betas, dtype=torch.float64),
        basis=basis,
        residual_norm=residual_norm,
        num_matvecs=len(alphas),
        invariant=invariant,
    )
