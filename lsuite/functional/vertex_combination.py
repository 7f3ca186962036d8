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
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lsuite.functional.flat_combination import add_rows, join_gradients
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

    @property
    def stride(self) -> tuple[int, ...]:
        """The strides of a contiguous tensor of `shape`."""
        strides, size = [], 1
        for n in reversed(self.shape):
            strides.append(size)
            size *= n
        return tuple(reversed(strides))


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
    their convolutions' weights. The gradient is the closed form, one ``(K, K) @ (K, P)``
    product (`_PairCosine`), rather than autograd's row selections (each adds a zero-filled
    copy of all vertices). A zero row has no angle: ``cos`` is then NaN.

    Args:
        points: ``(K, P)`` flattened vertices.
        i: one vertex.
        j: another vertex.

    Returns:
        ``(cos^2, cos)``, 0-dim tensors.
    """
    return _Cosine.apply(points, int(i), int(j))


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
            then a few elementwise operations rather than a ``(K,) @ (K, P)`` product (slower
            for small ``K`` on a CPU), equal to it to rounding. Two floats summing to 1 (to
            1e-12) are taken as ``(1 - w_1, w_1)``: the point is one ``torch.lerp``.
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
        if len(weights) == 2 and abs(weights[0] + weights[1] - 1) <= 1e-12:
            weights = (1 - weights[1], weights[1])  # what torch.lerp computes
    outputs = _Combination.apply(weight_vertices, other_vertices, weights, layout, *pair_args)
    count = len(layout.names)
    params = dict(zip(layout.names, outputs[:count], strict=True))
    return params, (None if pair is None else (outputs[count], outputs[count + 1]))


class _PairCosine:
    """The cosine of two rows of ``(K, P)`` points and the matrix of its gradient.

    With ``G = V V^T`` and ``c = G_ij / sqrt(G_ii G_jj)``, the gradient of a function of ``c``
    is ``S V`` for the ``(K, K)`` matrix ``S`` that is zero but for ``S_ii = -s c / G_ii``,
    ``S_ij = S_ji = s / sqrt(G_ii G_jj)`` and ``S_jj = -s c / G_jj`` (``s``: the function's
    derivative in ``c``). On a CPU the scalars are Python floats (reading them costs nothing
    there, and a tensor operation on a 0-dim tensor costs a few microseconds); on other devices
    0-dim tensors, so that no step waits for the device.

    Args:
        points: ``(K, P)`` rows.
        i: one row.
        j: another row.
    """

    def __init__(self, points: Tensor, i: int, j: int) -> None:
        self.pair = (i, j)
        self.num_rows = points.shape[0]
        rows, (a, b) = (points, (i, j)) if self.num_rows == 2 else (points[[i, j]], (0, 1))
        gram = rows @ rows.T  # (2, 2): one product reads both rows once
        self.on_host = scalars_on_host(points.device)
        if self.on_host:
            values = gram.tolist()
            aa, ab, bb = values[a][a], values[a][b], values[b][b]
            if aa > 0 and bb > 0:
                inverse_norms = (aa * bb) ** -0.5
                self.cosine = ab * inverse_norms
                # the entries (i, i), (i, j) = (j, i) and (j, j) of S / s
                self.coefficients = (-self.cosine / aa, inverse_norms, -self.cosine / bb)
            else:  # a zero row has no angle
                self.cosine, self.coefficients = math.nan, (math.nan,) * 3
            return
        aa, ab, bb = gram[a, a], gram[a, b], gram[b, b]
        inverse_norms = torch.rsqrt(aa * bb)
        self.cosine = ab * inverse_norms
        self.coefficients = (-self.cosine / aa, inverse_norms, -self.cosine / bb)

    def outputs(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(cos^2, cos)``, 0-dim tensors of ``like``'s dtype and device."""
        c = self.cosine
        if not self.on_host:  # copies: the outputs must not be held by the node's context
            return c * c, c.clone()
        return (
            torch.scalar_tensor(c * c, dtype=like.dtype, device=like.device),
            torch.scalar_tensor(c, dtype=like.dtype, device=like.device),
        )

    def gradient_matrix(
        self, grad_square: Tensor | None, grad_cosine: Tensor | None, like: Tensor
    ) -> Tensor:
        """Return the ``(K, K)`` matrix ``S`` for the gradients of ``cos^2`` and ``cos``."""
        (i, j), k = self.pair, self.num_rows
        if self.on_host:
            s = 0.0 if grad_cosine is None else grad_cosine.item()
            if grad_square is not None:
                s += 2 * self.cosine * grad_square.item()
            rows = [[0.0] * k for _ in range(k)]
            c_ii, c_ij, c_jj = (s * c for c in self.coefficients)
            rows[i][i], rows[i][j], rows[j][i], rows[j][j] = c_ii, c_ij, c_ij, c_jj
            return torch.tensor(rows, dtype=like.dtype, device=like.device)
        s = torch.zeros_like(self.cosine) if grad_cosine is None else grad_cosine
        if grad_square is not None:
            s = torch.addcmul(s, self.cosine, grad_square, value=2)
        c_ii, c_ij, c_jj = (s * c for c in self.coefficients)
        matrix = like.new_zeros(k, k)
        matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c_ii, c_ij, c_ij, c_jj
        return matrix


def scalars_on_host(device: torch.device) -> bool:
    """Whether the cosine's scalars are Python floats for vertices on ``device`` (a CPU)."""
    return device.type == "cpu"


class _Cosine(torch.autograd.Function):
    """``(cos^2, cos)`` of two rows of a matrix, in few operations (`_PairCosine`)."""

    @staticmethod
    def forward(ctx: Any, points: Tensor, i: int, j: int) -> tuple[Tensor, Tensor]:
        ctx.cosine = _PairCosine(points, i, j)
        ctx.save_for_backward(points)
        return ctx.cosine.outputs(points)

    @staticmethod
    @once_differentiable  # no second derivatives (nothing in lsuite takes them of the loss)
    def backward(ctx: Any, grad_square: Tensor | None, grad_cosine: Tensor | None) -> tuple:
        (points,) = ctx.saved_tensors
        matrix = ctx.cosine.gradient_matrix(grad_square, grad_cosine, points)
        return matrix @ points, None, None


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
        for part, entries in zip((weight_vertices, other_vertices), layout.parts, strict=True):
            if not entries:
                continue
            if layout.num_groups == 1:
                flat = _point(part, weights)
                outputs.extend(flat.as_strided(e.shape, e.stride, e.start) for e in entries)
            else:
                outputs.extend(
                    (weights[e.group] @ part[:, e.start : e.stop]).view(e.shape) for e in entries
                )
        ctx.layout = layout
        ctx.set_materialize_grads(False)
        # float weights travel as floats; tensors (and the vertices) saved with version checks
        ctx.weights = None if isinstance(weights, Tensor) else weights
        ctx.cosine = None if i < 0 else _PairCosine(weight_vertices, i, j)
        saved_weights = weights if isinstance(weights, Tensor) else None
        ctx.save_for_backward(saved_weights, None if ctx.cosine is None else weight_vertices)
        if ctx.cosine is None:
            return tuple(outputs)
        return (*outputs, *ctx.cosine.outputs(weight_vertices))

    @staticmethod
    @once_differentiable  # no second derivatives (nothing in lsuite takes them of the loss)
    def backward(ctx: Any, *grads: Tensor | None) -> tuple:
        layout: VertexLayout = ctx.layout
        present = next((g for g in grads if g is not None), None)
        if present is None:
            return None, None, None, None, None, None
        weights, points = ctx.saved_tensors
        if ctx.weights is not None:
            weights = torch.tensor([ctx.weights], dtype=present.dtype, device=present.device)
        count = len(layout.parts[0])
        cosine_grads = grads[len(layout.names) :]
        start = None
        if ctx.cosine is not None and any(g is not None for g in cosine_grads):
            start = ctx.cosine.gradient_matrix(*cosine_grads, points) @ points
        first = _add_outer(start, weights, grads[:count], layout.parts[0], present)
        second = _add_outer(
            None, weights, grads[count : len(layout.names)], layout.parts[1], present
        )
        return first, second, None, None, None, None


def _point(part: Tensor, weights: Tensor | tuple[float, ...]) -> Tensor:
    """Return the ``(P_part,)`` point ``weights @ part`` of one point's ``(1, K)`` or floats."""
    if isinstance(weights, Tensor):
        return weights[0] @ part
    if len(weights) == 2 and weights[0] == 1 - weights[1]:
        return torch.lerp(part[0], part[1], weights[1])  # one pass over both rows
    return add_rows(part, weights)


def _add_outer(
    out: Tensor | None,
    weights: Tensor,
    grads: Sequence[Tensor | None],
    entries: Sequence[VertexEntry],
    like: Tensor,
) -> Tensor:
    """Return ``out`` (or zeros) plus the weights' outer product with the tensors' gradients.

    Args:
        out: ``(K, P_part)`` to add to in place (a fresh product), or None.
        weights: ``(G, K)`` combination weights; tensor ``e`` uses row ``e.group``.
        grads: each tensor's gradient (None: zero).
        entries: where each tensor lies in the part's columns.
        like: a gradient, for the dtype and device.

    Returns:
        The ``(K, P_part)`` gradient of the part.
    """
    if weights.shape[0] == 1:  # one point: the tensors' gradients in one row, one product
        flat = join_gradients(grads, [e.stop - e.start for e in entries])
        if flat is None:  # no tensor in the part, or none received a gradient
            flat = like.new_zeros(entries[-1].stop if entries else 0)
        return torch.outer(weights[0], flat) if out is None else out.addr_(weights[0], flat)
    size = entries[-1].stop if entries else 0
    out = like.new_zeros(weights.shape[1], size) if out is None else out
    for g, e in zip(grads, entries, strict=True):
        if g is not None:
            out[:, e.start : e.stop].addr_(weights[e.group], g.reshape(-1))
    return out
