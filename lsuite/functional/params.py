"""Arithmetic on parameter dicts (name -> tensor), the weight-space vectors probes work with."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

Params = dict[str, Tensor]


def add(a: Mapping[str, Tensor], b: Mapping[str, Tensor], alpha: float = 1.0) -> Params:
    """Return ``a + alpha * b``, key by key (same keys and shapes as ``a``)."""
    return {k: a[k] + alpha * b[k] for k in a}


def sub(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Params:
    """Return ``a - b``, key by key."""
    return {k: a[k] - b[k] for k in a}


def scale(a: Mapping[str, Tensor], alpha: float | Tensor) -> Params:
    """Return ``alpha * a``."""
    return {k: alpha * v for k, v in a.items()}


def lerp(a: Mapping[str, Tensor], b: Mapping[str, Tensor], alpha: float) -> Params:
    """Return ``(1 - alpha) * a + alpha * b``: ``a`` at ``alpha = 0``, ``b`` at ``alpha = 1``."""
    return {k: a[k] + alpha * (b[k] - a[k]) for k in a}


def dot(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Tensor:
    """Return the Euclidean inner product of two parameter dicts as a 0-dim tensor."""
    return sum((torch.sum(a[k] * b[k]) for k in a), torch.zeros((), dtype=_dtype(a)))


def norm(a: Mapping[str, Tensor]) -> Tensor:
    """Return the Euclidean norm of a parameter dict as a 0-dim tensor."""
    return torch.sqrt(dot(a, a))


def zeros_like(a: Mapping[str, Tensor]) -> Params:
    """Return zeros with the keys, shapes, dtypes and devices of ``a``."""
    return {k: torch.zeros_like(v) for k, v in a.items()}


def clone(a: Mapping[str, Tensor]) -> Params:
    """Return detached copies of every tensor."""
    return {k: v.detach().clone() for k, v in a.items()}


def flatten(a: Mapping[str, Tensor]) -> Tensor:
    """Concatenate the tensors of ``a`` in key order into one vector of shape ``(P,)``."""
    return torch.cat([v.reshape(-1) for v in a.values()])


def unflatten(vector: Tensor, like: Mapping[str, Tensor]) -> Params:
    """Split a ``(P,)`` vector (or ``(..., P)`` batch) into a dict shaped like ``like``.

    Args:
        vector: ``(P,)`` or ``(K, P)`` tensor, entries in the key order of ``like``.
        like: reference dict giving keys and shapes.

    Returns:
        Dict with the keys of ``like``; each value has shape ``(*lead, *like[k].shape)``.
    """
    lead = vector.shape[:-1]
    out: Params = {}
    offset = 0
    for k, v in like.items():
        n = v.numel()
        out[k] = vector[..., offset : offset + n].reshape(*lead, *v.shape)
        offset += n
    return out


def numel(a: Mapping[str, Tensor]) -> int:
    """Return the total number of entries ``P``."""
    return sum(v.numel() for v in a.values())


def select(a: Mapping[str, Tensor], names: Iterable[str]) -> Params:
    """Return the sub-dict with the given keys, in the order given."""
    return {k: a[k] for k in names}


def _dtype(a: Mapping[str, Tensor]) -> torch.dtype:
    return next(iter(a.values())).dtype if a else torch.get_default_dtype()
