"""Coefficients of the control points of curves and simplexes in weight space, and their sums.

A curve (or simplex) with ``M`` control points ``w_0 .. w_{M-1}`` (same keys and shapes) is the
family ``w(t) = sum_i c_i(t) w_i``; the functions here give the ``(N, M)`` coefficient rows for
``N`` positions and combine parameter dicts (or flat ``(M, P)`` stacks) with them:

- quadratic (or any degree) Bezier curves: Bernstein polynomials ``binom(n, i) t^i (1 - t)^(n-i)``
  with ``n = M - 1`` (Garipov, Izmailov, Podoprikhin, Vetrov, Wilson 2018, "Loss Surfaces, Mode
  Connectivity, and Fast Ensembling of DNNs");
- polygonal chains through ``M - 2`` bends at evenly spaced ``t = i / (M - 1)`` (piecewise linear);
- simplexes: barycentric coordinates (each row non-negative, summing to 1), drawn from Dirichlet(1)
  or laid on a regular grid (Benton, Maddox, Lotfi, Wilson 2021, "Loss Surface Simplexes for Mode
  Connecting Volumes and Fast Ensembling").

``t`` runs from 0 (the first control point, a curve's start) to 1 (the last, its end).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from lsuite.errors import require
from lsuite.functional.params import Params

CurveKind = Literal["bezier", "polychain"]
CURVE_KINDS: tuple[str, ...] = ("bezier", "polychain")


def bezier_coefficients(t: Tensor, num_points: int) -> Tensor:
    """Return the Bernstein coefficients of a Bezier curve with ``num_points`` control points.

    Args:
        t: ``(N,)`` positions in ``[0, 1]``.
        num_points: control points ``M >= 2`` (3: the quadratic curve ``(1-t)^2, 2t(1-t), t^2``).

    Returns:
        ``(N, M)`` coefficients ``binom(M-1, i) t^i (1-t)^(M-1-i)``; each row sums to 1.
    """
    _check_count(num_points)
    degree = num_points - 1
    i = torch.arange(num_points, dtype=t.dtype, device=t.device)
    binom = torch.tensor(
        [math.comb(degree, k) for k in range(num_points)], dtype=t.dtype, device=t.device
    )
    t = t.reshape(-1, 1)
    # 0 ** 0 is 1 in torch.pow, so the ends are exact
    return binom * t.pow(i) * (1 - t).pow(degree - i)


def polychain_coefficients(t: Tensor, num_points: int) -> Tensor:
    """Return the coefficients of the polygonal chain through ``num_points`` evenly spaced points.

    Control point ``i`` sits at ``t = i / (M - 1)``; between two neighbours the chain is the
    straight segment (hat functions ``max(0, 1 - |(M - 1) t - i|)``).

    Args:
        t: ``(N,)`` positions in ``[0, 1]``.
        num_points: control points ``M >= 2`` (``M - 2`` bends).

    Returns:
        ``(N, M)`` coefficients; at most two are non-zero per row, and each row sums to 1.
    """
    _check_count(num_points)
    i = torch.arange(num_points, dtype=t.dtype, device=t.device)
    scaled = t.reshape(-1, 1) * (num_points - 1)
    return torch.clamp(1 - (scaled - i).abs(), min=0)


def curve_coefficients(kind: CurveKind, t: Tensor, num_points: int) -> Tensor:
    """Return ``(N, M)`` coefficients of a ``"bezier"`` or ``"polychain"`` curve at ``t``.

    Args:
        kind: ``"bezier"`` or ``"polychain"``.
        t: ``(N,)`` positions in ``[0, 1]``.
        num_points: control points ``M >= 2`` (the ends and the bends).

    Returns:
        The coefficient rows (see `bezier_coefficients`, `polychain_coefficients`).
    """
    require(kind in CURVE_KINDS, "kind", kind, f"one of {list(CURVE_KINDS)}")
    if kind == "bezier":
        return bezier_coefficients(t, num_points)
    return polychain_coefficients(t, num_points)


def curve_weights(kind: CurveKind, t: float, num_points: int) -> list[float]:
    """Return the ``M`` coefficients of a curve at one position ``t``, as Python floats.

    Equal (to rounding) to ``curve_coefficients(kind, torch.tensor([t]), num_points)[0]``, in
    plain arithmetic: a training step's draw then costs no tensor operations.

    Args:
        kind: ``"bezier"`` or ``"polychain"``.
        t: the position in ``[0, 1]``.
        num_points: control points ``M >= 2``.

    Returns:
        The coefficients of the ``M`` control points; they sum to 1.
    """
    require(kind in CURVE_KINDS, "kind", kind, f"one of {list(CURVE_KINDS)}")
    _check_count(num_points)
    degree = num_points - 1
    if kind == "bezier":
        return [math.comb(degree, i) * t**i * (1 - t) ** (degree - i) for i in range(num_points)]
    return [max(0.0, 1 - abs(t * degree - i)) for i in range(num_points)]


def dirichlet_coordinates(
    num_vertices: int, num_samples: int, generator: torch.Generator, dtype: torch.dtype
) -> Tensor:
    """Draw barycentric coordinates uniformly over the simplex (Dirichlet(1, ..., 1)).

    Normalised standard exponentials, drawn from ``generator`` (CPU).

    Args:
        num_vertices: vertices ``V >= 1``.
        num_samples: rows ``S >= 1``.
        generator: the CPU generator of every draw.
        dtype: the floating dtype of the result.

    Returns:
        ``(S, V)`` non-negative rows summing to 1.
    """
    _check_count(num_vertices, minimum=1, key="num_vertices")
    uniform = torch.rand(num_samples, num_vertices, generator=generator, dtype=torch.float64)
    exponential = -torch.log1p(-uniform)  # rand is in [0, 1): log1p(-u) is finite
    return (exponential / exponential.sum(dim=1, keepdim=True)).to(dtype)


def simplex_grid(num_vertices: int, resolution: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Return the regular grid of barycentric coordinates ``k / resolution`` over a simplex.

    Args:
        num_vertices: vertices ``V >= 1``.
        resolution: steps ``R >= 1`` along every edge (``R + 1`` points per edge).
        dtype: floating dtype.

    Returns:
        ``(G, V)`` rows with entries in ``{0, 1/R, ..., 1}`` summing to 1, ``G = binom(R+V-1,
        V-1)``, the vertices included; in lexicographic order of the integer numerators.
    """
    _check_count(num_vertices, minimum=1, key="num_vertices")
    _check_count(resolution, minimum=1, key="resolution")
    rows = [
        c
        for c in itertools.product(range(resolution + 1), repeat=num_vertices)
        if sum(c) == resolution
    ]
    return torch.tensor(rows, dtype=dtype) / resolution


def combine(points: Sequence[Mapping[str, Tensor]], coefficients: Tensor) -> Params:
    """Return ``sum_i coefficients[i] * points[i]``, key by key.

    Differentiable with respect to the points and the coefficients.

    Args:
        points: ``M`` parameter dicts with the same keys and shapes.
        coefficients: ``(M,)`` weights.

    Returns:
        A dict with the keys and shapes of ``points[0]``.
    """
    require(
        len(points) == coefficients.numel() and len(points) >= 1,
        "coefficients",
        tuple(coefficients.shape),
        f"one weight per point ({len(points)})",
    )
    weights = coefficients.reshape(-1)
    return {
        k: sum(
            (weights[i].to(points[i][k].dtype) * points[i][k] for i in range(1, len(points))),
            weights[0].to(points[0][k].dtype) * points[0][k],
        )
        for k in points[0]
    }


def combine_flat(points: Tensor, coefficients: Tensor) -> Tensor:
    """Return the points ``coefficients @ points`` of flat control points.

    Args:
        points: ``(M, P)`` control points, one flattened parameter vector per row.
        coefficients: ``(M,)`` or ``(N, M)`` weights.

    Returns:
        ``(P,)`` or ``(N, P)``.
    """
    return coefficients.to(points.dtype) @ points


FAMILY_ATTRIBUTE = "lsuite_point_family"
"""Attribute of a network that carries the `PointFamily` it is the midpoint of."""

FamilyKind = Literal["bezier", "polychain", "simplex"]


class PointFamily:
    """The control points of a curve or simplex a network belongs to (read, never copied).

    A module that trains a curve or simplex (`lsuite.model.curve`, `lsuite.model.simplex`)
    attaches one to the network its ``probe_network()`` returns (`attach_family`), so a probe that
    measures that network finds the whole family (`find_family`). Deep copies (skeletons) share
    it; ``points()`` reads the live control points each time.

    Args:
        kind: ``"bezier"``, ``"polychain"`` or ``"simplex"``.
        points: returns the ``(M, P)`` detached control points (vertices), flattened in the key
            order of the network's trainable parameters.
        fixed: positions of the frozen points (a curve's ends; a simplex's trained vertices).
        centre: ``(M,)`` coefficients of the network itself (a curve's ``t = 0.5``, a simplex's
            centroid).
    """

    def __init__(
        self,
        kind: FamilyKind,
        points: Callable[[], Tensor],
        fixed: Sequence[int],
        centre: Tensor,
    ) -> None:
        self.kind = kind
        self.points = points
        self.fixed = tuple(int(i) for i in fixed)
        self.centre = centre

    def coefficients(self, t: Tensor) -> Tensor:
        """Return a curve's ``(N, M)`` coefficients at ``(N,)`` positions (curves only)."""
        require(self.kind != "simplex", "kind", self.kind, "a curve kind for positions t")
        return curve_coefficients(self.kind, t, len(self.fixed) + self.num_free)  # type: ignore[arg-type]

    @property
    def num_free(self) -> int:
        """Number of trained (free) points."""
        return int(self.centre.numel()) - len(self.fixed)

    def __deepcopy__(self, memo: dict[int, Any]) -> PointFamily:
        return self

    def __repr__(self) -> str:
        return f"PointFamily(kind={self.kind!r}, points={self.centre.numel()}, fixed={self.fixed})"


def attach_family(network: Any, family: PointFamily) -> None:
    """Attach ``family`` to ``network`` (an ``nn.Module``) under `FAMILY_ATTRIBUTE`."""
    object.__setattr__(network, FAMILY_ATTRIBUTE, family)


def find_family(network: Any) -> PointFamily | None:
    """Return the `PointFamily` attached to ``network`` (or a copy of it), or None."""
    family = getattr(network, FAMILY_ATTRIBUTE, None)
    return family if isinstance(family, PointFamily) else None


def _check_count(value: int, minimum: int = 2, key: str = "num_points") -> None:
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        key,
        value,
        f"an int >= {minimum}",
    )
