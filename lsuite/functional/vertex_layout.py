"""Where each parameter tensor of a network lies in the flattened rows of a subspace's vertices."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lsuite.functional.vertex_combination import VertexEntry, VertexLayout


@dataclass(frozen=True)
class VertexColumns:
    """The columns of every parameter tensor in ``(K, P)`` vertex rows, weights first.

    Attributes:
        names: the parameter names in column order: the weights (tensors of two or more
            dimensions, those the cosine regulariser sees; every tensor if there are none),
            then the rest.
        num_weight_tensors: how many of ``names`` are weights.
        slices: each name's ``(start, stop)`` columns in the full rows.
        shapes: each name's shape.
        groups: each name's group: the index of its module with layerwise points, else 0.
        num_groups: ``G``, the number of groups (1 without layerwise points).
    """

    names: tuple[str, ...]
    num_weight_tensors: int
    slices: dict[str, tuple[int, int]]
    shapes: dict[str, torch.Size]
    groups: dict[str, int]
    num_groups: int

    @property
    def weight_names(self) -> list[str]:
        """The weights' names, in column order."""
        return list(self.names[: self.num_weight_tensors])

    @property
    def other_names(self) -> list[str]:
        """The other tensors' names, in column order."""
        return list(self.names[self.num_weight_tensors :])

    @property
    def num_weights(self) -> int:
        """``P_w``, the columns of the weights (the first part)."""
        return self.slices[self.names[self.num_weight_tensors - 1]][1]

    def layout(self, num_groups: int) -> VertexLayout:
        """Return the layout of the two parts for ``num_groups`` rows of weights (1 or ``G``).

        Args:
            num_groups: 1 (one point for every tensor) or `num_groups` (one per module).

        Returns:
            Each part's entries, with columns counted from the part's first.
        """
        parts = []
        for names, offset in ((self.weight_names, 0), (self.other_names, self.num_weights)):
            entries = []
            for n in names:
                a, b = self.slices[n]
                group = self.groups[n] if num_groups > 1 else 0
                entries.append(VertexEntry(n, a - offset, b - offset, self.shapes[n], group))
            parts.append(tuple(entries))
        return VertexLayout((parts[0], parts[1]), num_groups)


def vertex_columns(shapes: Mapping[str, torch.Size], layerwise: bool) -> VertexColumns:
    """Return the columns of a network's parameters (``shapes`` in the network's order).

    Args:
        shapes: each parameter's shape, by name (at least one).
        layerwise: one group per module (the name's prefix before the last dot), else one.

    Returns:
        The columns, weights first.
    """
    weights = [n for n, s in shapes.items() if len(s) >= 2] or list(shapes)
    names = weights + [n for n in shapes if n not in weights]
    bounds = list(itertools.accumulate((shapes[n].numel() for n in names), initial=0))
    owners = list(dict.fromkeys(n.rpartition(".")[0] for n in shapes))
    return VertexColumns(
        names=tuple(names),
        num_weight_tensors=len(weights),
        slices={n: (bounds[k], bounds[k + 1]) for k, n in enumerate(names)},
        shapes={n: torch.Size(shapes[n]) for n in names},
        groups={n: owners.index(n.rpartition(".")[0]) if layerwise else 0 for n in shapes},
        num_groups=len(owners) if layerwise else 1,
    )


def shuffled_vertices(base: Mapping[str, Tensor], names: Sequence[str], count: int) -> Tensor:
    """Return ``(count, P)`` rows: ``base`` flattened, then ``count - 1`` shuffled copies.

    Each copy permutes every tensor's entries (``torch.randperm``, the global generator, tensor
    by tensor in ``names`` order): a fresh draw of any elementwise i.i.d. initialisation.

    Args:
        base: the network's parameters, by name.
        names: the column order.
        count: ``K >= 1`` rows.

    Returns:
        The rows, columns in ``names`` order.
    """
    rows = [torch.cat([base[n].flatten() for n in names])]
    for _ in range(count - 1):
        shuffled = [base[n].flatten()[torch.randperm(base[n].numel())] for n in names]
        rows.append(torch.cat(shuffled))
    return torch.stack(rows)
