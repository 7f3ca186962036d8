"""Activation matching: pair units of two networks by the correlation of their activations.

Ainsworth, Hayase, Srinivasa (2023), "Git Re-Basin", section 3.1; Jordan et al. (2023), "REPAIR".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lsuite.align.capture import first_inputs, iterate_inputs, run_capture, traced_copy
from lsuite.align.spec import ActivationRef, PermutationSpec, check_spec
from lsuite.align.weight_matching import solve_assignment
from lsuite.errors import ConfigError


@dataclass(frozen=True)
class ActivationMatchingResult:
    """Permutations that align ``model_b`` to ``model_a`` and how well the units correlate.

    Args:
        perms: group name -> ``(C,)`` int64 permutation of ``b`` (for `apply_permutation`).
        correlation: group name -> mean correlation of matched unit pairs, in ``[-1, 1]``.
    """

    perms: dict[str, Tensor]
    correlation: dict[str, float]


def channel_features(value: Tensor, ref: ActivationRef, channels: int) -> Tensor:
    """Return the activations of one point as ``(N, C)`` samples (every position is a sample).

    Args:
        value: the node's output, channels on ``ref.dim`` in blocks of ``ref.inner``.
        ref: the activation point.
        channels: the group's size ``C``.

    Returns:
        ``(N, C)`` float64 features.
    """
    x = value.movedim(ref.dim, -1)
    x = x.reshape(*x.shape[:-1], -1, channels, ref.inner).movedim(-2, -1)  # (..., inner, C)
    return x.reshape(-1, channels).to(torch.float64)


def activation_statistics(
    spec: PermutationSpec, model_a: nn.Module, model_b: nn.Module, batches: Sequence[Any]
) -> dict[str, Tensor]:
    """Return this rank's sums for every group: one flat float64 tensor per group.

    Each tensor is ``[count, sum_a (C), sum_b (C), sum_a2 (C), sum_b2 (C), sum_ab (C*C)]``;
    sums are over samples (batch and spatial positions) and over the group's activation points,
    so adding the tensors of two ranks gives the tensors of their union.

    Args:
        spec: a traced spec (`permutation_spec`), with activation points.
        model_a: the reference model (not modified).
        model_b: the model to align (not modified).
        batches: probe batches, tensors or ``(inputs, targets)`` pairs.

    Returns:
        Group name -> ``(1 + 4 C + C^2,)`` float64 sums.

    Raises:
        ConfigError: if a group has no activation points (a hand-written spec).
    """
    for name, group in spec.groups.items():
        if not group.activations:
            raise ConfigError(
                f"spec: group {name!r} has no activation points; activation matching needs a "
                "spec from permutation_spec(model, example_inputs)"
            )
    example = first_inputs(batches, None)
    graph_a = traced_copy(model_a, example, spec.fixed)
    graph_b = traced_copy(model_b, example, spec.fixed)
    wanted = {ref.node for group in spec.groups.values() for ref in group.activations}
    sums = {
        name: torch.zeros(1 + 4 * g.size + g.size**2, dtype=torch.float64)
        for name, g in spec.groups.items()
    }
    for inputs in iterate_inputs(batches):
        _, found_a = run_capture(graph_a, inputs, wanted)
        _, found_b = run_capture(graph_b, inputs, wanted)
        for name, group in spec.groups.items():
            size = group.size
            for ref in group.activations:
                a = channel_features(found_a[ref.node], ref, size)
                b = channel_features(found_b[ref.node], ref, size)
                part = torch.cat(
                    [
                        torch.tensor([a.shape[0]], dtype=torch.float64),
                        a.sum(0),
                        b.sum(0),
                        (a * a).sum(0),
                        (b * b).sum(0),
                        (a.T @ b).reshape(-1),
                    ]
                )
                sums[name] += part
    return sums


def correlation_matrix(sums: Tensor, channels: int, eps: float = 1e-8) -> Tensor:
    """Return the ``(C, C)`` Pearson correlation of units of ``a`` (rows) and ``b`` (columns).

    Args:
        sums: one group's tensor from `activation_statistics` (after any all-reduce).
        channels: the group's size ``C``.
        eps: added to the standard deviations (dead units correlate 0).

    Returns:
        ``(C, C)`` float64 correlations.
    """
    c = channels
    count = sums[0]
    mean_a, mean_b = sums[1 : 1 + c] / count, sums[1 + c : 1 + 2 * c] / count
    var_a = (sums[1 + 2 * c : 1 + 3 * c] / count - mean_a**2).clamp_min(0)
    var_b = (sums[1 + 3 * c : 1 + 4 * c] / count - mean_b**2).clamp_min(0)
    cov = sums[1 + 4 * c :].reshape(c, c) / count - torch.outer(mean_a, mean_b)
    return cov / torch.outer(var_a.sqrt() + eps, var_b.sqrt() + eps)


def activation_matching(
    spec: PermutationSpec,
    model_a: nn.Module,
    model_b: nn.Module,
    batches: Sequence[Any],
    reduce_sum: Callable[[Tensor], Tensor] | None = None,
) -> ActivationMatchingResult:
    """Match units of ``model_b`` to ``model_a`` by the correlation of their activations.

    For every group, the activations at its points (the inputs of the layers that read the
    group's channels) are correlated unit by unit over the probe batches in eval mode, and the
    permutation maximising the summed correlation of matched pairs is found with
    ``scipy.optimize.linear_sum_assignment`` (within each chunk for GroupNorm groups).

    Args:
        spec: a traced spec (`permutation_spec`).
        model_a: the reference model (not modified).
        model_b: the model to align (not modified).
        batches: this rank's probe batches.
        reduce_sum: all-reduce (sum) over ranks of one flat float64 tensor; None on one process.
            The result equals the one-process result on the union of the ranks' batches.

    Returns:
        The permutations and the mean matched correlation per group.

    Raises:
        ConfigError: if the spec does not fit the models or has no activation points.
    """
    check_spec(spec, model_a)
    check_spec(spec, model_b)
    if not batches:
        raise ConfigError("batches: got no batches; activation matching needs probe batches")
    sums = activation_statistics(spec, model_a, model_b, batches)
    names = list(spec.groups)
    if reduce_sum is not None:
        flat = reduce_sum(torch.cat([sums[n] for n in names]))
        sizes = [sums[n].numel() for n in names]
        sums = dict(zip(names, torch.split(flat, sizes), strict=True))
    perms, correlation = {}, {}
    for name, group in spec.groups.items():
        corr = correlation_matrix(sums[name], group.size)
        perm = solve_assignment(corr, group.chunk)
        perms[name] = perm
        correlation[name] = float(corr[torch.arange(group.size), perm].mean())
    return ActivationMatchingResult(perms=perms, correlation=correlation)
