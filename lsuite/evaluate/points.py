"""Points in weight space laid out for evaluation: affine lines/planes, segments, grid axes.

Points are flat ``(P,)`` parameter vectors in the key order of ``point.params`` (see
`lsuite.functional.params.flatten`); `lsuite.evaluate.evaluation` evaluates them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lsuite.errors import require
from lsuite.functional.params import flatten
from lsuite.probes.point import ModelPoint


class AffinePoints:
    """Points ``base + coefficients[i] @ directions``.

    Args:
        base: ``(P,)`` flat parameters.
        directions: ``(J, P)`` flat directions (same dtype and device as ``base``).
        coefficients: ``(N, J)`` coordinates of the points, ``J >= 1``.
    """

    def __init__(self, base: Tensor, directions: Tensor, coefficients: Tensor) -> None:
        self.base = base
        self.directions = directions
        self.coefficients = coefficients.detach().to("cpu", torch.float64)
        self._rows = self.coefficients.tolist()
        self._head: list[float] | None = None
        self._partial: Tensor | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def fill(self, index: int, out: Tensor) -> None:
        """Write point ``index``, shape ``(P,)``, into ``out``.

        The sum of all but the last term is kept between calls, so walking a plane row by row
        costs one fused add per point.
        """
        *head, last = self._rows[index]
        if self._partial is None or head != self._head:
            self._partial = self.base.clone() if self._partial is None else self._partial
            self._partial.copy_(self.base)
            for j, c in enumerate(head):
                if c != 0.0:
                    self._partial.add_(self.directions[j], alpha=c)
            self._head = head
        if last == 0.0:
            out.copy_(self._partial)
        else:
            torch.add(self._partial, self.directions[-1], alpha=last, out=out)

    def stack(self, indices: slice) -> Tensor:
        """Return the points ``indices`` as ``(K, P)`` rows."""
        c = self.coefficients[indices].to(self.base.device, self.base.dtype)
        return torch.addmm(self.base.unsqueeze(0), c, self.directions)


class SegmentPoints:
    """Points ``lerp(start, end, alpha) = (1 - alpha) start + alpha end``, exact at both ends.

    Args:
        start: ``(P,)`` flat parameters at ``alpha = 0``.
        end: ``(P,)`` flat parameters at ``alpha = 1``.
        alphas: ``(N,)`` positions; values outside ``[0, 1]`` extrapolate.
    """

    def __init__(self, start: Tensor, end: Tensor, alphas: Sequence[float]) -> None:
        self.start = start
        self.end = end
        self.alphas = [float(a) for a in alphas]

    def __len__(self) -> int:
        return len(self.alphas)

    def fill(self, index: int, out: Tensor) -> None:
        """Write point ``index``, shape ``(P,)``, into ``out``."""
        torch.lerp(self.start, self.end, self.alphas[index], out=out)

    def stack(self, indices: slice) -> Tensor:
        """Return the points ``indices`` as ``(K, P)`` rows."""
        a = torch.tensor(self.alphas[indices], dtype=self.start.dtype, device=self.start.device)
        return torch.lerp(self.start.unsqueeze(0), self.end.unsqueeze(0), a.unsqueeze(1))


Points = AffinePoints | SegmentPoints
"""A family of points: ``len``, ``fill(index, out)`` (one ``(P,)`` point) and ``stack(slice)``."""


def flat_params(point: ModelPoint) -> Tensor:
    """Return the point's parameters as one ``(P,)`` vector in key order.

    Args:
        point: the frozen model.

    Returns:
        The detached ``(P,)`` vector.

    Raises:
        ConfigError: when the parameters do not share one floating dtype.
    """
    dtypes = {v.dtype for v in point.params.values()}
    require(len(dtypes) == 1, "model", sorted(map(str, dtypes)), "parameters of one dtype")
    return flatten(point.params).detach()


def grid_axis(span: Sequence[float], num_points: int, key: str = "span") -> list[float]:
    """Return ``num_points`` evenly spaced coordinates over ``span`` that include 0 exactly.

    Coordinates are ``first + (last - first) * i / (num_points - 1)`` in float64; the one
    within ``1e-9`` of zero is set to exactly 0 so the centre is evaluated at the weights
    themselves.

    Args:
        span: ``(first, last)`` with ``first < 0 < last``.
        num_points: number of coordinates, ``>= 3``.
        key: argument name for error messages.

    Returns:
        The coordinates, ascending.

    Raises:
        ConfigError: when ``span`` is not ``(first < 0 < last)``, ``num_points`` is not an
            int ``>= 3``, or the grid misses 0 (e.g. an even count on a symmetric span).
    """
    require(
        isinstance(num_points, int) and not isinstance(num_points, bool) and num_points >= 3,
        "num_points",
        num_points,
        "an int >= 3",
    )
    ok = (
        isinstance(span, Sequence)
        and len(span) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in span)
        and span[0] < 0 < span[1]
    )
    require(ok, key, span, "(first, last) with first < 0 < last")
    first, last = float(span[0]), float(span[1])
    axis = [first + (last - first) * i / (num_points - 1) for i in range(num_points)]
    axis = [0.0 if abs(a) < 1e-9 * (last - first) else a for a in axis]
    require(
        0.0 in axis,
        "num_points",
        num_points,
        f"a count whose grid over {tuple(span)} contains 0 (an odd count for a symmetric span)",
    )
    return axis
