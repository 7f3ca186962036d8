"""Stochastic Lanczos quadrature: spectral density estimates of a symmetric operator."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lsuite.linalg.lanczos import MatVec, lanczos
from lsuite.linalg.trace_estimators import rademacher


@dataclass(frozen=True)
class QuadratureRule:
    """A Gauss quadrature rule for the spectral measure ``sum_i (u^T e_i)^2 delta(t - lambda_i)``.

    Attributes:
        nodes: ``(m,)`` float64 Ritz values, ascending.
        weights: ``(m,)`` float64 squared first components of the eigenvectors of ``T``; they
            sum to 1.
    """

    nodes: Tensor
    weights: Tensor


def stochastic_lanczos_quadrature(
    matvec: MatVec,
    size: int,
    *,
    num_runs: int,
    num_steps: int,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[list[QuadratureRule], int]:
    """Return one quadrature rule per Rademacher start vector, and the products used.

    Averaging the rules over runs estimates the spectral density ``(1/P) sum_i delta(t -
    lambda_i)``: ``E[sum_j w_j f(theta_j)] = tr(f(A)) / P``, exactly for polynomials ``f`` of
    degree up to ``2 num_steps - 1`` per run. Lanczos uses full reorthogonalisation and stops
    early at an invariant subspace (the rule is then exact).

    Ghorbani, Krishnan, Xiao (2019), "An Investigation into Neural Net Optimization via Hessian
    Eigenvalue Density"; Golub, Meurant (2010), "Matrices, Moments and Quadrature".

    Args:
        matvec: product with the symmetric ``A``, ``(P,) -> (P,)``.
        size: dimension ``P``.
        num_runs: independent start vectors.
        num_steps: Lanczos steps per run (at most ``P`` are taken).
        generator: CPU generator for the start vectors.
        dtype: dtype of the vectors.
        device: device of the vectors.

    Returns:
        ``(rules, num_matvecs)``.
    """
    rules: list[QuadratureRule] = []
    used = 0
    for _ in range(num_runs):
        start = rademacher(1, size, generator, dtype, device)[0]
        decomposition = lanczos(matvec, start, num_steps)
        theta, s = decomposition.ritz()
        rules.append(QuadratureRule(nodes=theta, weights=s[0] ** 2))
        used += decomposition.num_matvecs
    return rules, used


def gaussian_density(rules: Sequence[QuadratureRule], grid: Tensor, sigma: float) -> Tensor:
    """Return the run-averaged density broadened by a Gaussian of width ``sigma`` on ``grid``.

    Args:
        rules: quadrature rules, one per run.
        grid: ``(G,)`` float64 points.
        sigma: standard deviation of the Gaussian kernel (same units as the nodes), > 0.

    Returns:
        ``(G,)`` float64 density; it integrates to 1 over the real line.
    """
    nodes = torch.cat([r.nodes for r in rules])  # (R m,)
    weights = torch.cat([r.weights for r in rules]) / len(rules)
    z = (grid[:, None] - nodes[None, :]) / sigma  # (G, R m)
    kernel = torch.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
    return kernel @ weights
