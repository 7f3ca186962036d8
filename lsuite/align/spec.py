"""Permutation specs: which parameter and buffer axes each permutation group acts on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

from lsuite.errors import ConfigError


@dataclass(frozen=True)
class AxisRef:
    """One axis of one parameter or buffer that a permutation group acts on.

    The axis of size ``D`` is read as ``(D // (C * inner), C, inner)`` and the group's permutation
    acts on the middle factor, so a channel permutation of a ``(C, H, W)`` map that is flattened
    into ``C * H * W`` features acts on blocks of ``inner = H * W`` consecutive features.

    Args:
        name: state-dict key, e.g. ``"hidden.0.weight"``.
        axis: axis of that tensor.
        inner: size of the block of consecutive entries each channel owns along ``axis``.
    """

    name: str
    axis: int
    inner: int = 1


@dataclass(frozen=True)
class ActivationRef:
    """A tensor in the traced forward where a group's channels appear (for activation matching).

    Args:
        node: name of the ``torch.fx`` node (deterministic for one architecture).
        dim: dimension of that node's output carrying the channels.
        inner: block size as in `AxisRef`.
    """

    node: str
    dim: int
    inner: int = 1


@dataclass(frozen=True)
class PermutationGroup:
    """One permutation shared by several axes.

    Args:
        size: number of channels ``C`` it permutes.
        axes: the axes it acts on.
        chunk: the permutation must map each block of ``chunk`` consecutive channels onto itself
            (``chunk == size`` means any permutation; GroupNorm sets ``size // num_groups``).
        activations: where the channels appear in the forward (empty for hand-written specs).
    """

    size: int
    axes: tuple[AxisRef, ...]
    chunk: int
    activations: tuple[ActivationRef, ...] = ()


@dataclass(frozen=True)
class PermutationSpec:
    """Permutation groups by name, and the shapes of the tensors they act on.

    A permutation ``perm`` of group ``g`` (a ``(C,)`` int64 tensor) says that channel ``i`` of
    the permuted network is channel ``perm[i]`` of the original one.

    Args:
        groups: group name -> `PermutationGroup`.
        shapes: state-dict key -> shape, for every key the groups name (used by `check_spec`).
        fixed: modules that were held fixed (opaque leaves) when the spec was traced.
    """

    groups: Mapping[str, PermutationGroup]
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    fixed: tuple[str, ...] = ()


def state_of(model: nn.Module) -> dict[str, Tensor]:
    """Return the model's parameters and buffers by state-dict key (detached, not cloned).

    Args:
        model: any module.

    Returns:
        ``model.state_dict(keep_vars=False)`` as a plain dict.
    """
    return dict(model.state_dict())


def check_spec(spec: PermutationSpec, model: nn.Module | Mapping[str, Tensor]) -> None:
    """Check that ``spec`` fits ``model`` (or a state dict): every key exists with its shape.

    Args:
        spec: the permutation spec.
        model: a module or its state dict.

    Raises:
        ConfigError: naming the first key that is missing or has another shape, or an axis that
            does not divide into the group's channels.
    """
    state = state_of(model) if isinstance(model, nn.Module) else model
    for name, group in spec.groups.items():
        for ref in group.axes:
            if ref.name not in state:
                raise ConfigError(
                    f"permutation spec: group {name!r} names key {ref.name!r}, which the model "
                    f"does not have (model keys start {sorted(state)[:3]})"
                )
            shape = tuple(state[ref.name].shape)
            expected = spec.shapes.get(ref.name)
            if expected is not None and tuple(expected) != shape:
                raise ConfigError(
                    f"permutation spec: key {ref.name!r} has shape {shape} in the model and "
                    f"{tuple(expected)} in the spec"
                )
            if ref.axis >= len(shape) or shape[ref.axis] % (group.size * ref.inner) != 0:
                raise ConfigError(
                    f"permutation spec: key {ref.name!r} of shape {shape}: axis {ref.axis} does "
                    f"not hold {group.size} channels of {ref.inner} entries (group {name!r})"
                )
