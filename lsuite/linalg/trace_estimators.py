"""Stochastic trace estimators (Hutchinson, Hutch++) on a block matrix-product callable."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

MatMat = Callable[[Tensor], Tensor]
"""``matmat(V) -> V A`` for a symmetric ``A``: ``(K, P)`` rows in, ``(K, P)`` rows ``A v_i`` out."""

MIN_SAMPLES = 8
"""Fewest Hutchinson samples before the relative standard error may stop an estimate."""


@dataclass(frozen=True)
class TraceEstimate:
    """An unbiased estimate of ``tr(A)`` with its standard error.

    Attributes:
        trace: the estimate.
        stderr: its standard error: the sample standard deviation of the Hutchinson terms over
            ``sqrt(num_samples)`` (Hutch++: of the residual terms; the low-rank part is exact
            given its basis); ``nan`` with fewer than two samples, 0 when nothing was sampled.
        num_matvecs: products with ``A`` used.
        num_samples: Hutchinson samples (residual samples for Hutch++).
        converged: whether ``stderr <= rel_stderr * |trace|`` stopped the estimate.
        blocks: ``(B,)`` float64 estimates of the traces of the diagonal blocks given by
            ``block_sizes`` (they sum to ``trace``); ``None`` without ``block_sizes``.
        block_stderr: ``(B,)`` float64 standard errors of ``blocks``; ``None`` without them.
    """

    trace: float
    stderr: float
    num_matvecs: int
    num_samples: int
    converged: bool
    blocks: Tensor | None = None
    block_stderr: Tensor | None = None


def rademacher(
    num: int, size: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Draw ``(num, size)`` independent ``±1`` entries on the CPU and move them to ``device``."""
    signs = torch.randint(0, 2, (num, size), generator=generator, dtype=dtype)
    return (2 * signs - 1).to(device)


def hutchinson(
    matmat: MatMat,
    size: int,
    *,
    num_matvecs: int,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
    rel_stderr: float | None = None,
    block_size: int = 8,
    block_sizes: Sequence[int] | None = None,
) -> TraceEstimate:
    """Estimate ``tr(A)`` as the mean of ``v^T A v`` over Rademacher vectors ``v``.

    Vectors are drawn ``block_size`` at a time; after each block the estimate stops once at
    least `MIN_SAMPLES` samples give ``stderr <= rel_stderr * |trace|``, or at ``num_matvecs``.
    The single-sample variance is ``2 (||A||_F^2 - sum_i A_ii^2)``.

    Hutchinson (1989), "A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines".

    Args:
        matmat: product with ``A`` on row blocks.
        size: dimension ``P``.
        num_matvecs: budget of products (the most samples).
        generator: CPU generator for the vectors.
        dtype: dtype of the vectors.
        device: device of the vectors.
        rel_stderr: relative standard error at which to stop early; None runs the whole budget.
        block_size: vectors per call of ``matmat``.
        block_sizes: sizes of consecutive diagonal blocks (summing to ``P``) whose traces are
            estimated from the same samples.

    Returns:
        The estimate.
    """
    sizes = list(block_sizes) if block_sizes is not None else [size]
    exact = torch.zeros(len(sizes), dtype=torch.float64)
    samples: list[Tensor] = []
    num = 0
    converged = False
    while num < num_matvecs:
        vectors = rademacher(min(block_size, num_matvecs - num), size, generator, dtype, device)
        samples.append(_block_products(vectors, matmat(vectors), sizes))
        num += vectors.shape[0]
        if _small_enough(_estimate(exact, samples, num, False), rel_stderr):
            converged = True
            break
    return _estimate(exact, samples, num, converged, block_sizes is not None)


def hutchpp(
    matmat: MatMat,
    size: int,
    *,
    num_matvecs: int,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
    rel_stderr: float | None = None,
    block_size: int = 8,
    block_sizes: Sequence[int] | None = None,
) -> TraceEstimate:
    """Estimate ``tr(A)`` by Hutch++: the exact trace on a sketched top subspace plus Hutchinson.

    A third of the budget sketches ``A S`` (``S`` Rademacher), whose orthonormal basis ``Q`` spans
    the dominant eigenvectors; a third computes ``tr(Q^T A Q)`` exactly; the rest estimates
    ``tr((I - QQ^T) A (I - QQ^T))`` by Hutchinson on projected Rademacher vectors, stopping early
    like `hutchinson` on the relative standard error of the total. The standard error is that of
    the residual samples (the low-rank part is exact given ``Q``).

    Meyer, Musco, Musco, Woodruff (2021), "Hutch++: Optimal Stochastic Trace Estimation".

    Args:
        matmat: product with ``A`` on row blocks.
        size: dimension ``P``.
        num_matvecs: budget of products, at least 3.
        generator: CPU generator for the vectors.
        dtype: dtype of the vectors.
        device: device of the vectors.
        rel_stderr: relative standard error at which to stop early; None runs the whole budget.
        block_size: vectors per call of ``matmat``.
        block_sizes: sizes of consecutive diagonal blocks (summing to ``P``) whose traces are
            estimated from the same products.

    Returns:
        The estimate.
    """
    sizes = list(block_sizes) if block_sizes is not None else [size]
    rank = min(max(num_matvecs // 3, 1), size)
    sketch = _chunked(matmat, rademacher(rank, size, generator, dtype, device), block_size)
    basis = torch.linalg.qr(sketch.T).Q.T  # (rank, P) orthonormal rows
    low_rank = _block_products(basis, _chunked(matmat, basis, block_size), sizes).sum(0)
    num = 2 * rank
    samples: list[Tensor] = []
    converged = rel_stderr is not None and rank == size  # the low-rank part is the exact trace
    while num < num_matvecs and rank < size:
        vectors = rademacher(min(block_size, num_matvecs - num), size, generator, dtype, device)
        vectors = vectors - (vectors @ basis.T) @ basis
        samples.append(_block_products(vectors, matmat(vectors), sizes))
        num += vectors.shape[0]
        if _small_enough(_estimate(low_rank, samples, num, False), rel_stderr):
            converged = True
            break
    return _estimate(low_rank, samples, num, converged, block_sizes is not None)


def _chunked(matmat: MatMat, vectors: Tensor, block_size: int) -> Tensor:
    return torch.cat([matmat(chunk) for chunk in vectors.split(block_size)])


def _block_products(vectors: Tensor, products: Tensor, sizes: list[int]) -> Tensor:
    """Return ``(K, B)`` float64 sums of ``v_i * (A v_i)`` over each block of entries."""
    terms = (vectors * products).to(torch.float64)
    return torch.stack([part.sum(1) for part in terms.split(sizes, dim=1)], dim=1)


def _estimate(
    exact: Tensor, samples: list[Tensor], num_matvecs: int, converged: bool, blocks: bool = False
) -> TraceEstimate:
    """Combine exact block traces ``(B,)`` with Hutchinson samples (list of ``(K, B)``)."""
    if samples:
        terms = torch.cat(samples)  # (n, B)
        count = terms.shape[0]
        mean = exact + terms.mean(0)
        total = terms.sum(1)
        if count > 1:
            block_err = terms.std(0) / math.sqrt(count)
            stderr = float(total.std() / math.sqrt(count))
        else:
            block_err = torch.full_like(mean, math.nan)
            stderr = math.nan
    else:
        count, mean, block_err, stderr = 0, exact, torch.zeros_like(exact), 0.0
    return TraceEstimate(
        trace=float(mean.sum()),
        stderr=stderr,
        num_matvecs=num_matvecs,
        num_samples=count,
        converged=converged,
        blocks=mean if blocks else None,
        block_stderr=block_err if blocks else None,
    )


def _small_enough(estimate: TraceEstimate, rel_stderr: float | None) -> bool:
    return (
        rel_stderr is not None
        and estimate.num_samples >= MIN_SAMPLES
        and estimate.stderr <= rel_stderr * abs(estimate.trace)
    )
