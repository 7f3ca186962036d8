"""Apply permutations to a state dict (parameters and buffers) following a permutation spec."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from lsuite.align.spec import PermutationSpec
from lsuite.errors import ConfigError


def permute_axis(tensor: Tensor, axis: int, perm: Tensor, inner: int = 1) -> Tensor:
    """Return ``tensor`` with the channels of ``axis`` reordered by ``perm``.

    Args:
        tensor: any tensor; ``axis`` has size ``outer * C * inner``.
        axis: the axis to permute.
        perm: ``(C,)`` int64; entry ``i`` of the result is entry ``perm[i]`` of ``tensor``.
        inner: block size of each channel along ``axis`` (see `AxisRef`).

    Returns:
        A new tensor of the same shape.
    """
    size = tensor.shape[axis]
    channels = perm.numel()
    shape = (*tensor.shape[:axis], size // (channels * inner), channels, inner)
    shape = (*shape, *tensor.shape[axis + 1 :])
    blocks = tensor.reshape(shape)
    return blocks.index_select(axis + 1, perm.to(tensor.device)).reshape(tensor.shape)


def apply_permutation(
    spec: PermutationSpec, perms: Mapping[str, Tensor], state: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Return a copy of ``state`` with every group's permutation applied (params and buffers).

    Keys the spec does not name (``num_batches_tracked``, the input layer's input axis, the head's
    outputs) are passed through unchanged. ``state`` itself is not modified.

    Args:
        spec: the permutation spec.
        perms: group name -> ``(C,)`` int64 permutation; a missing group is the identity.
        state: state dict (same keys as the model's ``state_dict()``).

    Returns:
        The permuted state dict (same keys and shapes as ``state``).

    Raises:
        ConfigError: if ``perms`` names an unknown group or has the wrong size.
    """
    for name, perm in perms.items():
        if name not in spec.groups:
            raise ConfigError(f"perms: unknown group {name!r}; the spec has {list(spec.groups)}")
        if tuple(perm.shape) != (spec.groups[name].size,):
            raise ConfigError(
                f"perms[{name!r}]: got shape {tuple(perm.shape)}; expected "
                f"({spec.groups[name].size},)"
            )
    out = dict(state)
    for name, group in spec.groups.items():
        if name not in perms:
            continue
        for ref in group.axes:
            out[ref.name] = permute_axis(out[ref.name], ref.axis, perms[name], ref.inner)
    return out


def identity_perms(spec: PermutationSpec) -> dict[str, Tensor]:
    """Return the identity permutation of every group.

    Args:
        spec: the permutation spec.

    Returns:
        Group name -> ``arange(C)``.
    """
    return {name: torch.arange(group.size) for name, group in spec.groups.items()}


def random_perms(spec: PermutationSpec, generator: torch.Generator) -> dict[str, Tensor]:
    """Draw a random permutation for every group, respecting each group's ``chunk``.

    Args:
        spec: the permutation spec.
        generator: source of randomness.

    Returns:
        Group name -> ``(C,)`` int64 permutation that maps each chunk onto itself.
    """
    out = {}
    for name, group in spec.groups.items():
        pieces = [
            start + torch.randperm(group.chunk, generator=generator)
            for start in range(0, group.size, group.chunk)
        ]
        out[name] = torch.cat(pieces)
    return out


def invert(perm: Tensor) -> Tensor:
    """Return the inverse permutation of a ``(C,)`` permutation."""
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel(), device=perm.device)
    return inverse
