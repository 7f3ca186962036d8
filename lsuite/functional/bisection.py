"""Find the largest scale at which a non-decreasing function stays at or below a target."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class ScaleSearch:
    """The outcome of `largest_below`.

    Attributes:
        value: the largest scale found with ``fn(value) <= target`` (the lower end of the final
            bracket; ``lower`` itself).
        lower: the last scale with ``fn <= target``.
        upper: the first scale with ``fn > target`` (``inf`` when none was found).
        evaluations: calls of ``fn``.
        bracketed: whether ``fn`` exceeded the target within the scale limits.
    """

    value: float
    lower: float
    upper: float
    evaluations: int
    bracketed: bool


def largest_below(
    fn: Callable[[float], float],
    target: float,
    *,
    start: float,
    depth: int,
    smallest: float = 1e-12,
    largest: float = 1e12,
) -> ScaleSearch:
    """Return the largest ``s > 0`` with ``fn(s) <= target``, for ``fn`` non-decreasing in ``s``.

    The bracket ``[lower, upper]`` is found by doubling or halving from ``start`` (so the result
    has the same relative precision at any scale), then narrowed by ``depth`` geometric
    bisection steps. ``fn(0)`` is assumed to be ``<= target`` (e.g. a loss increase at zero
    perturbation). When ``fn`` stays below the target up to ``largest``, the search stops there
    (``bracketed=False``); when it exceeds the target down to ``smallest``, ``value`` is 0.

    Args:
        fn: the function of the scale (a loss increase at perturbation scale ``s``).
        target: the level not to exceed.
        start: first scale tried, ``> 0``.
        depth: bisection steps once bracketed; the bracket ratio ends at ``2 ** (2 ** -depth)``.
        smallest: the least scale tried.
        largest: the greatest scale tried.

    Returns:
        The search outcome.
    """
    count = 0

    def below(scale: float) -> bool:
        nonlocal count
        count += 1
        value = fn(scale)
        return value <= target  # a nan counts as above (a diverged perturbation)

    lower, upper = 0.0, math.inf
    scale = start
    if below(scale):
        lower = scale
        while upper == math.inf and scale < largest:
            scale *= 2.0
            if below(scale):
                lower = scale
            else:
                upper = scale
        if upper == math.inf:
            return ScaleSearch(lower, lower, upper, count, bracketed=False)
    else:
        upper = scale
        while lower == 0.0 and scale > smallest:
            scale /= 2.0
            if below(scale):
                lower = scale
            else:
                upper = scale
        if lower == 0.0:
            return ScaleSearch(0.0, 0.0, upper, count, bracketed=True)
    for _ in range(depth):
        middle = math.sqrt(lower * upper)
        if below(middle):
            lower = middle
        else:
            upper = middle
    return ScaleSearch(lower, lower, upper, count, bracketed=True)
