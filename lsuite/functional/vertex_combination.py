"""A network's parameters at a combination of stacked vertices, with a cosine, in one autograd node.

Used by `lsuite.model.subspace.Subspace` (Wortsman et al. 2021, "Learning neural network
subspaces"): each training step evaluates the network at ``sum_k weights[k] * vertex_k`` and
regularises ``cos^2`` between two vertices. Written as one ``autograd.Function`` because on a
small network the step is dominated by per-operation costs (~5-10 us each on a CPU), and
autograd's own graph (a product, a split and a view per parameter tensor; a second product and a
gradient sum for the regulariser) has many more operations than the closed form.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lsuite.functional.flat_combination import add_rows
from lsuite.functional.params import Params


@dataclass(frozen=True)
class VertexEntry:
    """Where one parameter tensor lies in the rows of its part of the vertices.

    Attributes:
        name: the parameter's name in the network.
        start: first column of the part's ``(K, P_part)`` rows.
        stop: one past the last column.
        shape: the parameter's shape.
        group: the row of the ``(G, K)`` weights that combines it (0 without layerwise points).
    """

    name: str
    start: int
    stop: int
    shape: tuple[int, ...]
    group: int


@dataclass(frozen=True)
class VertexLayout:
    """The parameter tensors of the two parts of the vertices (``weights`` and ``others``).

    Attributes:
        parts: the entries of each part, in column order; the first part holds the tensors the
            cosine regulariser sees.
        num_groups: ``G``, the rows of the combination weights (1: one point for all tensors).
    """

    parts: tuple[tuple[VertexEntry, ...], tuple[VertexEntry, ...]]
    num_groups: int

    @functools.cached_property
    def names(self) -> list[str]:
        """The parameter names, the first part's then the second's."""
        return [e.name for part in self.parts for e in part]

    @functools.cached_property
    def sizes(self) -> tuple[list[int], list[int]]:
        """Each part's tensor sizes, in column order."""
        first, second = ([e.stop - e.start for e in part] for part in self.parts)
        return first, second


def cosine_squared(points: Tensor, i: int, j: int) -> tuple[Tensor, Tensor]:
    """Return ``cos^2`` and ``cos`` of the angle between rows ``i`` and ``j`` of ``points``.

    `Subspace` passes the weights of its vertices' linear and convolutional layers (the tensors
    with two or more dimensions, flattened and concatenated), as Wortsman et al. regularise
    their convolutions' weights. The gradient is the closed form, written straight into one
    ``(K, P)`` tensor (autograd's row selections would each add a zero-filled copy of all
    vertices).

    Args:
        points: ``(K, P)`` flattened vertices.
        i: one vertex.
        j: another vertex.

    Returns:
        ``(cos^2, cos)``, 0-dim tensors.
    """
    square, cosine, _ = _Cosine.apply(points, int(i), int(j))
    return square, cosine


def combine_vertices(
    weight_vertices: Tensor,
    other_vertices: Tensor,
    weights: Tensor | Sequence[float],
    layout: VertexLayout,
    pair: tuple[int, int] | None = None,
) -> tuple[Params, tuple[Tensor, Tensor] | None]:
    """Return the parameters at ``weights`` and, for a ``pair``, ``cos^2`` and ``cos`` of it.

    Each tensor is ``weights[group] @ vertices[:, start:stop]`` (viewed to its shape); the
    gradient with respect to the vertices is the outer product of the weights with the
    parameters' gradient, plus the cosine's closed-form gradient (`cosine_squared`) on the
    first part. Values and gradients equal those of the same expression through autograd.

    Args:
        weight_vertices: ``(K, P_w)``, the first part.
        other_vertices: ``(K, P - P_w)``, the second part.
        weights: ``(G, K)`` barycentric weights, in the vertices' dtype and device (not
            differentiated), or, for one point (``G = 1``), ``K`` Python floats: each part is
            then ``K`` elementwise operations rather than a ``(K,) @ (K, P)`` product (slower
            for small ``K`` on a CPU), equal to it to rounding.
        layout: where each tensor lies.
        pair: two vertices whose weight rows' cosine is returned too, or None.

    Returns:
        The parameters by name (`VertexLayout.names` order), and ``(cos^2, cos)`` (0-dim) for a
        pair, else None.

    Raises:
        ValueError: for float weights not one per vertex, or with a layout of several groups.
    """
    pair_args = (-1, -1) if pair is None else (int(pair[0]), int(pair[1]))
    if not isinstance(weights, Tensor):
        weights = tuple(float(w) for w in weights)
        if layout.num_groups != 1 or len(weights) != weight_vertices.shape[0]:
            raise ValueError(
                f"weights: got {len(weights)} floats; expected one per vertex "
                f"({weight_vertices.shape[0]}) and a layout of one group ({layout.num_groups})"
            )
    outputs = _Combination.apply(weight_vertices, other_vertices, weights, layout, *pair_args)
    count = len(layout.names)
    params = dict(zip(layout.names, outputs[:count], strict=True))
    return params, (None if pair is None else (outputs[count], outputs[count + 1]))


def _cosine_forward(points: Tensor, i: int, j: int) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``cos^2``, ``cos`` and the 4 coefficients of the gradient's matrix ``S / s``."""
    u, v = points[i], points[j]
    # three dot products: a (K, P) @ (P, K) Gram product is ~20x slower on a CPU for K = 2
    ab, aa, bb = u @ v, u @ u, v @ v
    inverse_norms = torch.rsqrt(aa * bb)
    cosine = ab * inverse_norms
    # the entries (i, i), (i, j), (j, i), (j, j) of S / s
    coefficients = torch.stack([-cosine / aa, inverse_norms, inverse_norms, -cosine / bb])
    return cosine * cosine, cosine, coefficients


def _add_cosine_gradient(
    out: Tensor,
    points: Tensor,
    pair: tuple[int, int],
    cosine: Tensor,
    coefficients: Tensor,
    grad_square: Tensor | None,
    grad_cosine: Tensor | None,
) -> None:
    """Add the ``(K, P)`` gradient ``S @ points`` of a function of ``(cos^2, cos)`` to ``out``.

    With ``G = V V^T`` and ``c = G_ij / sqrt(G_ii G_jj)``, the gradient of a function of ``c`` is
    ``S V`` for the ``(K, K)`` matrix ``S`` that is zero but for ``S_ii = -s c / G_ii``,
    ``S_ij = S_ji = s / sqrt(G_ii G_jj)`` and ``S_jj = -s c / G_jj`` (``s``: its derivative in
    ``c``): only rows ``i`` and ``j`` change, each by two scaled vertices (four elementwise
    operations, not autograd's chain of row selections, nor a slow ``(K, K) @ (K, P)`` product).
    """
    zero = torch.zeros_like(cosine)
    grad_square = zero if grad_square is None else grad_square
    grad_cosine = zero if grad_cosine is None else grad_cosine
    scale = torch.addcmul(grad_cosine, cosine, grad_square, value=2)
    s_ii, s_ij, s_ji, s_jj = (scale * coefficients).unbind()
    (i, j), u, v = pair, points[pair[0]], points[pair[1]]
    out[i].addcmul_(u, s_ii).addcmul_(v, s_ij)
    out[j].addcmul_(u, s_ji).addcmul_(v, s_jj)


class _Cosine(torch.autograd.Function):
    """``(cos^2, cos)`` of two rows of a matrix, in few operations (see `_add_cosine_gradient`)."""

    @staticmethod
    def forward(points: Tensor, i: int, j: int) -> tuple[Tensor, Tensor, Tensor]:
        return _cosine_forward(points, i, j)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        points, i, j = inputs
        ctx.pair = (i, j)
        ctx.mark_non_differentiable(output[2])
        ctx.save_for_backward(points, output[1], output[2])

    @staticmethod
    @once_differentiable  # no second derivatives (nothing in lsuite takes them of the loss)
    def backward(ctx: Any, grad_square: Tensor, grad_cosine: Tensor, _: Tensor) -> tuple:
        points, cosine, coefficients = ctx.saved_tensors
        grad = torch.zeros_like(points)
        _add_cosine_gradient(grad, points, ctx.pair, cosine, coefficients, grad_square, grad_cosine)
        return grad, None, None


class _Combination(torch.autograd.Function):
    """The parameters at a combination of the vertices (and a pair's cosine), one graph node."""

    @staticmethod
    def forward(
        ctx: Any,
        weight_vertices: Tensor,
        other_vertices: Tensor,
        weights: Tensor | tuple[float, ...],
        layout: VertexLayout,
        i: int,
        j: int,
    ) -> tuple[Tensor, ...]:
        outputs: list[Tensor] = []
        floats = not isinstance(weights, Tensor)
        row = weights if floats else weights[0]
        for part, entries, sizes in zip(
            (weight_vertices, other_vertices), layout.parts, layout.sizes, strict=True
        ):
            if not entries:
                continue
            if layout.num_groups == 1:
                # (K,) @ (K, P_part): the product autograd's expression computes, then views
                flat = add_rows(part, row) if floats else row @ part
                chunks = flat.split_with_sizes(sizes)
                outputs.extend(c.view(e.shape) for c, e in zip(chunks, entries, strict=True))
            else:
                outputs.extend(
                    (weights[e.group] @ part[:, e.start : e.stop]).view(e.shape) for e in entries
                )
        ctx.layout, ctx.pair = layout, (i, j)
        ctx.set_materialize_grads(False)
        ctx.weights = weights if floats else None
        saved = (weight_vertices,) if floats else (weights,)  # a placeholder for float weights
        if i < 0:
            ctx.save_for_backward(*saved)
            return tuple(outputs)
        square, cosine, coefficients = _cosine_forward(weight_vertices, i, j)
        ctx.save_for_backward(*saved, weight_vertices, cosine, coefficients)
        return (*outputs, square, cosine)

    @staticmethod
    @once_differentiable  # no second derivatives (nothing in lsuite takes them of the loss)
    def backward(ctx: Any, *grads: Tensor | None) -> tuple:
        layout: VertexLayout = ctx.layout
        weights = ctx.saved_tensors[0]
        if ctx.weights is not None:
            weights = torch.tensor(ctx.weights, dtype=weights.dtype, device=weights.device)
            weights = weights.unsqueeze(0)  # (1, K)
        grad_parts: list[Tensor] = []
        offset = 0
        column = weights.unsqueeze(2)  # (G, K, 1)
        for entries in layout.parts:
            part = [
                torch.zeros(e.shape, dtype=weights.dtype, device=weights.device) if g is None else g
                for g, e in zip(grads[offset : offset + len(entries)], entries, strict=True)
            ]
            offset += len(entries)
            grad_parts.append(_outer(column, part, entries, layout.num_groups))
        if ctx.pair[0] >= 0 and (grads[offset] is not None or grads[offset + 1] is not None):
            _, points, cosine, coefficients = ctx.saved_tensors
            square, cos = grads[offset], grads[offset + 1]
            # grad_parts[0] is a fresh product or concatenation: added to in place
            _add_cosine_gradient(grad_parts[0], points, ctx.pair, cosine, coefficients, square, cos)
        return grad_parts[0], grad_parts[1], None, None, None, None


def _outer(
    column: Tensor, grads: Sequence[Tensor], entries: Sequence[VertexEntry], num_groups: int
) -> Tensor:
    """Return the ``(K, P_part)`` gradient of one part: weight columns times tensor gradients.

    ``column`` is ``(G, K, 1)``; each tensor's gradient is multiplied by its group's column.
    """
    if not entries:
        return column.new_zeros(column.shape[1], 0)
    if num_groups == 1:
        return column[0] * torch.cat([g.reshape(-1) for g in grads])
    columns = [column[e.group] * g.reshape(-1) for g, e in zip(grads, entries, strict=True)]
    return torch.cat(columns, dim=1)
