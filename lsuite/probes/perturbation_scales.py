"""The largest weight perturbations (random or worst-case) that keep the loss rise below a target.

Jiang, Neyshabur, Mobahi, Krishnan, Bengio 2019, "Fantastic Generalization Measures and Where to
Find Them", Appendix C: the PAC-Bayes scale ``sigma`` and the sharpness scale ``alpha'``, each
with a magnitude-aware variant. Every value is a mean over the probe data of all ranks.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lsuite.errors import ConfigError
from lsuite.evaluate import AffinePoints, Batching, evaluate_points
from lsuite.functional.bisection import ScaleSearch, largest_below
from lsuite.probes.data_source import DataSource
from lsuite.probes.directions import loss_and_gradient
from lsuite.probes.point import ModelPoint

Criterion = Literal["loss", "error"]
CRITERIA = ("loss", "error")


def criterion_values(
    point: ModelPoint,
    source: DataSource,
    base: Tensor,
    offsets: Tensor,
    criterion: Criterion,
    batching: Batching = "auto",
) -> Tensor:
    """Return the mean loss (or top-1 error) at every point ``base + offsets[i]``.

    Args:
        point: the frozen model.
        source: the probe data.
        base: ``(P,)`` flat parameters.
        offsets: ``(M, P)`` perturbations.
        criterion: ``"loss"`` (the probe loss) or ``"error"`` (``1 - top-1 accuracy``).
        batching: how the points are evaluated (see `lsuite.evaluate`).

    Returns:
        ``(M,)`` float64 values, identical on every rank.

    Raises:
        ConfigError: for ``criterion="error"`` when top-1 accuracy is undefined for the outputs.
    """
    coefficients = torch.eye(offsets.shape[0], dtype=torch.float64)
    points = AffinePoints(base, offsets, coefficients)
    values, _ = evaluate_points(point, {source.name: source}, points, batching=batching)
    split = values[source.name]
    if criterion == "loss":
        return split.loss
    if split.accuracy is None:
        raise ConfigError(
            "criterion: got 'error'; top-1 accuracy is undefined for these outputs and targets "
            "(expected (N, C) logits and (N,) class indices); use criterion 'loss'"
        )
    return 1.0 - split.accuracy


def pacbayes_sigma(
    point: ModelPoint,
    source: DataSource,
    flat: Tensor,
    draws: Tensor,
    *,
    target: float,
    criterion: Criterion,
    base_value: float,
    magnitude_eps: float | None,
    start: float,
    depth: int,
    batching: Batching = "auto",
) -> ScaleSearch:
    """Return the largest ``sigma`` whose expected criterion rise under weight noise is <= target.

    Plain (Jiang et al.'s ``pacbayes``): ``u ~ N(0, sigma^2 I)``. Magnitude-aware
    (``pacbayes.mag``, with ``magnitude_eps``): ``u_i ~ N(0, sigma^2 w_i^2 + eps^2)``, a standard
    deviation of ``sqrt(sigma^2 w_i^2 + eps^2)`` (the public implementation of the paper passes
    the variance where a standard deviation is expected). The expectation is a Monte Carlo mean
    over the antithetic pairs ``w +- u_k``, ``u_k = std * z_k``, with the same ``z_k`` at every
    ``sigma`` (common random numbers), so the estimate is a smooth function of ``sigma`` and the
    bisection converges to its crossing of the target.

    Args:
        point: the frozen model.
        source: the probe data.
        flat: ``(P,)`` flat weights ``w``.
        draws: ``(K, P)`` standard normal draws ``z_k``.
        target: the allowed rise of the criterion over ``base_value``.
        criterion: ``"loss"`` or ``"error"``.
        base_value: the criterion at ``w``.
        magnitude_eps: ``eps`` of the magnitude-aware noise; None for plain noise.
        start: first ``sigma`` tried.
        depth: bisection steps (see `largest_below`).
        batching: how the points are evaluated.

    Returns:
        The search; ``value`` is ``sigma``.
    """

    def rise(sigma: float) -> float:
        if magnitude_eps is None:
            std: Tensor | float = sigma
        else:
            std = torch.sqrt(sigma**2 * flat.double() ** 2 + magnitude_eps**2).to(flat.dtype)
        noise = draws * std
        values = criterion_values(
            point, source, flat, torch.cat([noise, -noise]), criterion, batching
        )
        return float(values.mean()) - base_value

    return largest_below(rise, target, start=start, depth=depth)


def sharpness_alpha(
    point: ModelPoint,
    source: DataSource,
    flat: Tensor,
    gradient: Tensor,
    signs: Tensor,
    *,
    target: float,
    criterion: Criterion,
    base_value: float,
    magnitude_eps: float | None,
    steps: int,
    start: float,
    depth: int,
    counter: list[int],
    batching: Batching = "auto",
) -> ScaleSearch:
    """Return the largest ``alpha`` whose worst-case criterion rise in a box is <= target.

    The box is ``|u_i| <= alpha`` (Jiang et al.'s ``sharpness``) or, magnitude-aware,
    ``|u_i| <= alpha |w_i| + eps`` (``sharpness.mag``). The worst case is searched by projected
    sign-gradient ascent: ``u_1 = b * sign(grad L(w))``, then ``u_{k+1} = b * sign(grad L(w +
    u_k))`` for the bound ``b`` (each step moves to the corner of the box that maximises the
    linearised loss; on a convex loss every step rises). The rise is the largest over the
    ``steps`` iterates (a lower bound on the maximum, which is NP-hard over a box). A zero
    gradient entry takes its sign from ``signs``.

    Args:
        point: the frozen model.
        source: the probe data.
        flat: ``(P,)`` flat weights ``w``.
        gradient: ``(P,)`` the gradient of the mean probe loss at ``w``.
        signs: ``(P,)`` random signs (+-1) for zero gradient entries.
        target: the allowed rise of the criterion over ``base_value``.
        criterion: ``"loss"`` or ``"error"``.
        base_value: the criterion at ``w``.
        magnitude_eps: ``eps`` of the magnitude-aware box; None for the plain box.
        steps: ascent iterates per ``alpha``, ``>= 1`` (1: one signed-gradient step).
        start: first ``alpha`` tried.
        depth: bisection steps (see `largest_below`).
        counter: ``counter[0]`` is increased by the gradients computed.
        batching: how the iterates are evaluated.

    Returns:
        The search; ``value`` is ``alpha'``.
    """
    magnitude = flat.abs()

    def rise(alpha: float) -> float:
        bound = alpha * magnitude + magnitude_eps if magnitude_eps is not None else alpha
        iterates = [bound * _sign(gradient, signs)]
        for _ in range(steps - 1):
            _, grad = loss_and_gradient(point, source, flat + iterates[-1])
            counter[0] += 1
            iterates.append(bound * _sign(grad, torch.sign(iterates[-1])))
        values = criterion_values(point, source, flat, torch.stack(iterates), criterion, batching)
        return float(values.max()) - base_value

    return largest_below(rise, target, start=start, depth=depth)


def _sign(gradient: Tensor, fallback: Tensor) -> Tensor:
    sign = torch.sign(gradient)
    return torch.where(sign == 0, fallback, sign)
