"""Buffers along a segment: floating ones interpolated, integer ones from the nearer end.

The running statistics of BatchNorm belong to a solution like its weights: at ``alpha = 0`` a
curve between two solutions should be the start network with its own statistics, at
``alpha = 1`` the end network with its own. `interpolate_buffers` gives every point of the line
``lerp(start, end, alpha)`` of the floating buffers (``running_mean`` / ``running_var``), with
``alpha`` clamped to ``[0, 1]`` so an extrapolated variance never turns negative, and the
integer ones (``num_batches_tracked``) of the nearer end. `BufferedPoints` attaches those buffers
to a family of points (`lsuite.evaluate` binds ``buffers(index)`` in its loop and vmaps
``stack_buffers(slice)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lsuite.functional.params import Params
from lsuite.probes.point import ModelPoint

BN_INTERPOLATED = "interpolated"
"""The ``bn_statistics`` of curves whose running statistics follow the line (this module)."""


def start_buffers(start: Params, point: ModelPoint) -> Params:
    """Return the buffers a start state carries, on the device and dtype of the point's.

    Args:
        start: a state: parameters and, possibly, buffers (keys of ``point.buffers``).
        point: the measured point.

    Returns:
        The entries of ``start`` whose keys are buffers of ``point`` (floating ones cast to the
        point's dtype); empty when ``start`` holds parameters only.
    """
    out: Params = {}
    for key, ref in point.buffers.items():
        value = start.get(key)
        if isinstance(value, Tensor) and tuple(value.shape) == tuple(ref.shape):
            dtype = ref.dtype if ref.is_floating_point() else value.dtype
            out[key] = value.detach().to(device=ref.device, dtype=dtype)
    return out


def covers_running_statistics(buffers: Params, point: ModelPoint) -> bool:
    """Say whether ``buffers`` hold the running mean and variance of every BatchNorm layer.

    Args:
        buffers: buffers of a start state (see `start_buffers`).
        point: the measured point.

    Returns:
        True when every ``running_mean`` / ``running_var`` of ``point`` is in ``buffers`` (and
        there is at least one).
    """
    keys = [k for k in point.buffers if k.endswith(("running_mean", "running_var"))]
    return bool(keys) and all(k in buffers for k in keys)


def interpolate_buffers(start: Params, end: Params, alpha: float) -> Params:
    """Return the buffers at ``alpha`` on the segment from ``start`` (0) to ``end`` (1).

    Floating buffers are ``lerp(start, end, clamp(alpha, 0, 1))`` (exactly ``start`` at 0 and
    ``end`` at 1); integer buffers come from ``start`` for ``alpha < 0.5`` and from ``end``
    otherwise. Keys of ``end`` missing from ``start`` are taken from ``end``.

    Args:
        start: buffers at ``alpha = 0``.
        end: buffers at ``alpha = 1`` (every key of the result).
        alpha: the position.

    Returns:
        Buffers with the keys of ``end`` (fresh tensors).
    """
    weight = min(max(float(alpha), 0.0), 1.0)
    out: Params = {}
    for key, last in end.items():
        first = start.get(key)
        if first is None:
            out[key] = last.clone()
        elif last.is_floating_point():
            out[key] = torch.lerp(first.to(last.dtype), last, weight)
        else:
            out[key] = (first if weight < 0.5 else last).clone()
    return out


class BufferedPoints:
    """A family of points whose every point has its own buffers (interpolated along ``alphas``).

    Args:
        points: the points (``len``, ``fill``, ``stack``; e.g. a `SegmentPoints`).
        alphas: ``(N,)`` the position of every point on the segment.
        start: buffers at ``alpha = 0``.
        end: buffers at ``alpha = 1`` (the measured point's).
    """

    def __init__(self, points: object, alphas: Sequence[float], start: Params, end: Params) -> None:
        self.points = points
        self.alphas = [float(a) for a in alphas]
        self.start = start
        self.end = end

    def __len__(self) -> int:
        return len(self.alphas)

    def fill(self, index: int, out: Tensor) -> None:
        """Write point ``index``, shape ``(P,)``, into ``out``."""
        self.points.fill(index, out)  # type: ignore[attr-defined]

    def stack(self, indices: slice) -> Tensor:
        """Return the points ``indices`` as ``(K, P)`` rows."""
        return self.points.stack(indices)  # type: ignore[attr-defined]

    def buffers(self, index: int) -> Params:
        """Return the buffers of point ``index`` (see `interpolate_buffers`)."""
        return interpolate_buffers(self.start, self.end, self.alphas[index])

    def stack_buffers(self, indices: slice) -> Params:
        """Return the buffers of the points ``indices``, each ``(K, *shape)``."""
        rows = [self.buffers(i) for i in range(len(self.alphas))[indices]]
        return {key: torch.stack([row[key] for row in rows]) for key in self.end}
