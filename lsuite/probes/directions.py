"""Directions in weight space for landscape sections: random, Hessian, trajectory PCA, points.

Every function is pure: it takes parameter dicts (name -> tensor, weight space) and returns new
ones with the same keys and shapes; random draws come only from the given CPU generator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor

from lsuite.errors import ConfigError
from lsuite.functional.params import Params, flatten, norm, scale, unflatten
from lsuite.probes.data_source import DataSource
from lsuite.probes.point import ModelPoint

HessianEnd = Literal["largest", "smallest"]


def gaussian_like(params: Mapping[str, Tensor], generator: torch.Generator) -> Params:
    """Draw a standard Gaussian direction shaped like ``params`` (drawn on the CPU, then moved).

    Args:
        params: reference parameters (keys, shapes, dtype, device).
        generator: CPU generator; entries are drawn key by key in key order.

    Returns:
        Same keys and shapes as ``params``.
    """
    return {
        k: torch.randn(v.shape, generator=generator, dtype=v.dtype).to(v.device)
        for k, v in params.items()
    }


def filter_normalize(
    direction: Mapping[str, Tensor], params: Mapping[str, Tensor], *, keep_1d: bool = False
) -> Params:
    """Scale each filter of ``direction`` to the norm of the same filter of ``params``.

    A filter is one slice along the first dimension of a parameter with two or more dimensions
    (an output channel of a conv, a row of a linear weight). Parameters with at most one
    dimension (biases, norm scales) are zeroed, or with ``keep_1d`` scaled as one filter to the
    norm of the parameter. A zero weight filter gives a zero direction filter (no division by
    zero).

    Li, Xu, Taylor, Studer, Goldstein (2018), "Visualizing the Loss Landscape of Neural Nets".

    Args:
        direction: the raw direction (same keys and shapes as ``params``).
        params: the weights whose filter norms are matched.
        keep_1d: keep (and normalise) 1-D parameters instead of zeroing them.

    Returns:
        The normalised direction, same keys and shapes as ``params``.
    """
    out: Params = {}
    for k, w in params.items():
        d = direction[k]
        if w.dim() <= 1 and not keep_1d:
            out[k] = torch.zeros_like(d)
            continue
        rows = 1 if w.dim() <= 1 else w.shape[0]
        out[k] = _scale_rows(d.reshape(rows, -1), w.reshape(rows, -1)).reshape(w.shape)
    return out


def random_direction(
    params: Mapping[str, Tensor],
    generator: torch.Generator,
    *,
    normalization: Literal["filter", "model", "unit"] = "filter",
    keep_1d: bool = False,
) -> Params:
    """Draw a Gaussian direction and normalise it.

    Args:
        params: the weights at the centre.
        generator: CPU generator for the draw.
        normalization: ``"filter"`` (`filter_normalize`), ``"model"`` (norm ``||params||``) or
            ``"unit"`` (norm 1).
        keep_1d: for ``"filter"``, keep 1-D parameters (see `filter_normalize`).

    Returns:
        Same keys and shapes as ``params``.
    """
    direction = gaussian_like(params, generator)
    if normalization == "filter":
        return filter_normalize(direction, params, keep_1d=keep_1d)
    return rescale(direction, params, normalization)


def rescale(
    direction: Mapping[str, Tensor],
    params: Mapping[str, Tensor],
    to: Literal["model", "unit"],
) -> Params:
    """Scale ``direction`` to norm ``||params||`` (``"model"``) or 1 (``"unit"``).

    Args:
        direction: the direction (same keys and shapes as ``params``).
        params: the weights whose norm ``"model"`` matches.
        to: the target norm.

    Returns:
        The rescaled direction.

    Raises:
        ConfigError: when the direction is zero (e.g. a zero gradient).
    """
    length = float(norm(direction))
    if length == 0.0:
        raise ConfigError("direction: got a zero vector; it cannot be normalised")
    target = float(norm(params)) if to == "model" else 1.0
    return scale(direction, target / length)


def radial_direction(params: Mapping[str, Tensor]) -> Params:
    """Return ``params`` itself: moving along it rescales every weight (``t = -1`` is zero)."""
    return {k: v.clone() for k, v in params.items()}


def gradient_direction(point: ModelPoint, source: DataSource) -> Params:
    """Return the gradient of the mean probe loss at the point (the ascent direction).

    The loss is the sample-weighted mean over every batch of every rank.

    Args:
        point: the frozen model.
        source: the probe batches.

    Returns:
        Same keys and shapes as ``point.params``.
    """
    _, gradient = loss_and_gradient(point, source, flatten(point.params))
    return unflatten(gradient, point.params)


def loss_and_gradient(point: ModelPoint, source: DataSource, flat: Tensor) -> tuple[float, Tensor]:
    """Return the mean probe loss and its gradient at flat parameters ``flat``.

    Args:
        point: the frozen model (skeleton, buffers, loss function).
        source: the probe batches; the mean is over all batches of all ranks.
        flat: ``(P,)`` parameters in the key order of ``point.params``.

    Returns:
        ``(loss, gradient)`` with the gradient of shape ``(P,)``, identical on every rank.
    """
    buffers = point.buffers
    if point.bn_mode == "train":
        buffers = {k: v.clone() for k, v in buffers.items()}
    leaves = flat.detach().clone().requires_grad_(True)
    params = unflatten(leaves, point.params)
    loss = torch.zeros((), dtype=torch.float64, device=flat.device)
    gradient = torch.zeros_like(flat)
    with torch.enable_grad():
        for (inputs, targets), weight in source.weights():
            value = point.criterion(point.outputs(inputs, params, buffers), targets) * weight
            (grad,) = torch.autograd.grad(value, leaves)
            gradient += grad
            loss += value.detach().double()
    total = source.sum(torch.cat([gradient.double(), loss.reshape(1)]))
    return float(total[-1]), total[:-1].to(flat.dtype)


def hessian_directions(
    point: ModelPoint,
    source: DataSource,
    ends: Sequence[HessianEnd],
    generator: torch.Generator,
) -> tuple[list[Params], list[float]]:
    """Return unit Hessian eigenvectors of the mean probe loss and their eigenvalues.

    ``ends`` lists which eigenvector each direction is: ``("largest",)`` for the top one,
    ``("largest", "largest")`` for the top two, ``("largest", "smallest")`` for the top and the
    most negative. The sign of each vector is fixed so that its largest-magnitude entry is
    positive.

    Args:
        point: the frozen model.
        source: the probe batches (the Hessian is of their mean loss).
        ends: the requested eigenvectors, in order.
        generator: CPU generator for the Lanczos start vectors.

    Returns:
        ``(directions, eigenvalues)``: unit directions with the keys of ``point.params``.
    """
    from lsuite.linalg.operator_eigenpairs import hessian_eigenpairs
    from lsuite.probes.hessian_operator import HessianOperator

    operator = HessianOperator(point, source)
    found: dict[str, list[tuple[float, Params]]] = {}
    for end in dict.fromkeys(ends):
        k = sum(1 for e in ends if e == end)
        eigenvalues, vectors = hessian_eigenpairs(operator, k, generator=generator, which=end)
        found[end] = [
            (float(value), unflatten(_fix_sign(vector).to(point.dtype), point.params))
            for value, vector in zip(eigenvalues.tolist(), vectors, strict=True)
        ]
    chosen = [found[end].pop(0) for end in ends]
    return [d for _, d in chosen], [v for v, _ in chosen]


def trajectory_directions(
    trajectory: Sequence[Mapping[str, Tensor]], center: Mapping[str, Tensor]
) -> tuple[list[Params], list[float], Tensor]:
    """Return the first two principal directions of ``trajectory - center`` and its coordinates.

    The rows ``w_i - center`` are centred on their mean and the top two right singular vectors
    are the directions (as ``sklearn.decomposition.PCA``); each is signed so that its
    largest-magnitude entry is positive. Coordinates are the projections of ``w_i - center``
    (not centred) onto the directions, so ``center`` sits at ``(0, 0)``.

    Li, Xu, Taylor, Studer, Goldstein (2018), "Visualizing the Loss Landscape of Neural Nets".

    Args:
        trajectory: the weights seen during training (at least two differing from ``center``).
        center: the weights at the centre of the plane.

    Returns:
        ``(directions, explained_variance_ratio, coordinates)``: two unit directions (keys of
        ``center``), the fraction of the variance each explains, and ``(T, 2)`` coordinates.

    Raises:
        ConfigError: with fewer than two distinct observed weight vectors.
    """
    like = dict(center)
    rows = torch.stack([flatten(w) - flatten(like) for w in trajectory]).double()  # (T, P)
    if rows.shape[0] < 2 or float(torch.linalg.matrix_rank(rows - rows.mean(0))) < 2:
        raise ConfigError(
            f"directions: 'trajectory' needs at least three distinct observed weight vectors "
            f"(got {rows.shape[0]} observations besides the centre); measure later in training "
            "(e.g. on_fit_end)"
        )
    _, singular, vh = torch.linalg.svd(rows - rows.mean(0), full_matrices=False)
    basis = vh[:2]
    basis = torch.stack([_fix_sign(b) for b in basis])
    explained = (singular[:2] ** 2 / (singular**2).sum()).tolist()
    coordinates = rows @ basis.T  # (T, 2)
    dtype = next(iter(like.values())).dtype
    directions = [unflatten(b.to(dtype), like) for b in basis]
    return directions, explained, coordinates


def plane_through(
    points: Sequence[Mapping[str, Tensor]],
) -> tuple[Params, list[Params], Tensor]:
    """Return an orthonormal basis of the plane through three weight vectors.

    The origin is their centroid; the first direction points from the first vector to the
    second, the second is the rest of ``points[2] - points[0]`` orthogonal to it (Gram-Schmidt),
    as in Garipov et al. (2018), "Loss Surfaces, Mode Connectivity, and Fast Ensembling of DNNs".

    Args:
        points: three weight vectors with equal keys and shapes.

    Returns:
        ``(origin, [u, v], coordinates)`` with unit ``u``, ``v`` and ``(3, 2)`` coordinates of
        the three points.

    Raises:
        ConfigError: when the three points are (nearly) on one line.
    """
    like = dict(points[0])
    flats = torch.stack([flatten(p).double() for p in points])  # (3, P)
    origin = flats.mean(0)
    u = flats[1] - flats[0]
    v = flats[2] - flats[0]
    u_norm = torch.linalg.vector_norm(u)
    if float(u_norm) == 0.0:
        raise ConfigError("points: the first two weight vectors are equal; expected three distinct")
    u = u / u_norm
    v = v - (v @ u) * u
    v_norm = torch.linalg.vector_norm(v)
    scale_ref = float(torch.linalg.vector_norm(flats[2] - flats[0]))
    if scale_ref == 0.0 or float(v_norm) <= 1e-6 * scale_ref:
        raise ConfigError("points: the three weight vectors lie on one line; expected a plane")
    v = v / v_norm
    basis = torch.stack([u, v])
    coordinates = (flats - origin) @ basis.T
    dtype = next(iter(like.values())).dtype
    return (
        unflatten(origin.to(dtype), like),
        [unflatten(b.to(dtype), like) for b in basis],
        coordinates,
    )


def cosine(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """Return the cosine of the angle between two directions (0 when one is zero)."""
    fa, fb = flatten(a).double(), flatten(b).double()
    denominator = float(torch.linalg.vector_norm(fa) * torch.linalg.vector_norm(fb))
    return float(fa @ fb) / denominator if denominator > 0 else 0.0


def _fix_sign(vector: Tensor) -> Tensor:
    """Flip ``vector`` so that its largest-magnitude entry is positive."""
    return vector * torch.sign(vector[vector.abs().argmax()])


def _scale_rows(d: Tensor, w: Tensor) -> Tensor:
    """Scale each row of ``d`` (R, n) to the norm of the same row of ``w``."""
    d_norm = torch.linalg.vector_norm(d, dim=1, keepdim=True)
    w_norm = torch.linalg.vector_norm(w, dim=1, keepdim=True)
    factor = torch.where(d_norm > 0, w_norm / d_norm.clamp_min(torch.finfo(d.dtype).tiny), 0.0)
    return d * factor
