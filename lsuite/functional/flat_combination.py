"""A network's parameters at ``offset + weights @ rows`` of flat points, in one autograd node.

Used by `lsuite.model.point_combination.PointCombination` (curves and simplexes): each training
step evaluates the network at a combination of its control points, of which only the free
``rows`` are trained (the frozen ones' part is the constant ``offset``). Through autograd the
step's graph holds a product, a sum and a slice and reshape per parameter tensor, and every
slice's backward fills a zero copy of all ``P`` entries; this node's backward is one
concatenation and one outer product.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lsuite.functional.params import Params


def combine_rows(
    rows: Tensor,
    weights: Sequence[float],
    offset: Tensor | None,
    names: Sequence[str],
    shapes: Sequence[torch.Size],
) -> Params:
    """Return the parameters ``offset + sum_k weights[k] * rows[k]``, split by name and shaped.

    Values equal ``unflatten(offset + w @ rows, like)`` for ``w = torch.tensor(weights)`` (to
    rounding: each row is added with one fused multiply-add), and gradients with respect to
    ``rows`` equal those of that expression through autograd: row ``k``'s is ``weights[k]``
    times the parameters' concatenated gradient. The weights are Python floats: a training
    step's coefficients cost no tensor operations (and no host-to-device copy).

    Args:
        rows: ``(K, P)`` flat points (trained), columns in the order of ``names``.
        weights: ``K`` coefficients (not differentiated).
        offset: ``(P,)`` constant added (the frozen points' part), or None.
        names: the parameter names, in column order.
        shapes: each parameter's shape; their sizes sum to ``P``.

    Returns:
        The parameters by name, each a view of one ``(P,)`` tensor.

    Raises:
        ValueError: for a number of weights other than ``K``.
    """
    if len(weights) != rows.shape[0]:
        raise ValueError(f"weights: got {len(weights)}; expected one per row ({rows.shape[0]})")
    outputs = _RowCombination.apply(rows, tuple(float(w) for w in weights), offset, tuple(shapes))
    return dict(zip(names, outputs, strict=True))


def add_rows(rows: Tensor, weights: Sequence[float], offset: Tensor | None = None) -> Tensor:
    """Return the ``(P,)`` sum ``offset + sum_k weights[k] * rows[k]`` (not a graph node).

    Args:
        rows: ``(K, P)`` flat points.
        weights: ``K`` Python floats.
        offset: ``(P,)`` tensor added, or None.

    Returns:
        The flat point: ``K`` elementwise operations, cheaper than a ``(K,) @ (K, P)`` product
        for small ``K`` on a CPU.

    Raises:
        ValueError: without rows and without an offset.
    """
    flat = offset
    for row, w in zip(rows, weights, strict=True):
        flat = row * w if flat is None else torch.add(flat, row, alpha=w)
    if flat is None:
        raise ValueError("rows: got 0 rows and no offset; expected at least one")
    return flat


def join_gradients(grads: Sequence[Tensor | None], sizes: Sequence[int]) -> Tensor | None:
    """Return the ``(P,)`` concatenation of a node's parameter gradients (None: zeros).

    The backward of a node whose outputs are views of one flat point (``None`` for an output
    that received no gradient, with ``ctx.set_materialize_grads(False)``).

    Args:
        grads: one gradient per tensor, or None.
        sizes: each tensor's number of entries.

    Returns:
        The flat gradient, or None when every gradient is None.
    """
    present = next((g for g in grads if g is not None), None)
    if present is None:
        return None
    return torch.cat(
        [
            present.new_zeros(n) if g is None else g.reshape(-1)
            for g, n in zip(grads, sizes, strict=True)
        ]
    )


class _RowCombination(torch.autograd.Function):
    """``offset + weights @ rows``, split into parameter tensors, as one graph node."""

    @staticmethod
    def forward(
        ctx: Any,
        rows: Tensor,
        weights: tuple[float, ...],
        offset: Tensor | None,
        shapes: tuple[torch.Size, ...],
    ) -> tuple[Tensor, ...]:
        flat = add_rows(rows, weights, offset)
        sizes = [s.numel() for s in shapes]
        ctx.shapes, ctx.weights = shapes, weights
        ctx.set_materialize_grads(False)
        return tuple(c.view(s) for c, s in zip(flat.split_with_sizes(sizes), shapes, strict=True))

    @staticmethod
    @once_differentiable  # no second derivatives (nothing in lsuite takes them of the loss)
    def backward(ctx: Any, *grads: Tensor | None) -> tuple:
        flat = join_gradients(grads, [s.numel() for s in ctx.shapes])
        if flat is None:
            return None, None, None, None
        if len(ctx.weights) == 1:
            grad = (flat * ctx.weights[0]).unsqueeze(0)
        else:
            column = torch.tensor(ctx.weights, dtype=flat.dtype, device=flat.device)
            grad = column.unsqueeze(1) * flat
        return grad, None, None, None
