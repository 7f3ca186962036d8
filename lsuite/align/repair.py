"""States at interpolated points with BatchNorm statistics reset or REPAIR's renormalisation.

Jordan, Sedghi, Saukh, Entezari, Neyshabur (2023), "REPAIR: REnormalizing Permuted Activations
for Interpolation Repair".
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.fx as fx
from torch import Tensor, nn

from lsuite.align.capture import first_inputs, iterate_inputs, load, run_capture, traced_copy
from lsuite.align.spec import PermutationSpec
from lsuite.align.tracing import permutation_spec
from lsuite.errors import ConfigError, require

Repair = Literal["none", "bn_reset", "repair"]
REPAIRS = ("none", "bn_reset", "repair")
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def interpolate_state(
    state_a: Mapping[str, Tensor], state_b: Mapping[str, Tensor], alpha: float
) -> dict[str, Tensor]:
    """Return ``(1 - alpha) * a + alpha * b`` for floating tensors (``a`` at ``alpha = 0``).

    Integer buffers (``num_batches_tracked``) are taken from ``a``.

    Args:
        state_a: state dict at ``alpha = 0``.
        state_b: state dict at ``alpha = 1`` (same keys and shapes; aligned to ``a`` if wanted).
        alpha: interpolation coefficient.

    Returns:
        The interpolated state dict.
    """
    return {
        k: torch.lerp(v, state_b[k], alpha) if v.is_floating_point() else v.clone()
        for k, v in state_a.items()
    }


def reset_batch_norm(
    model: nn.Module, state: Mapping[str, Tensor], batches: Sequence[Any]
) -> dict[str, Tensor]:
    """Return ``state`` with every BatchNorm's running statistics recomputed on ``batches``.

    A copy of ``model`` holding ``state`` runs the batches with BatchNorm layers in train mode
    (``momentum=None``: the running statistics become the average over the batches of the batch
    statistics, as PyTorch computes them) and every other module in eval mode (no dropout).

    Args:
        model: the architecture (not modified).
        state: the state dict to repair.
        batches: probe batches, tensors or ``(inputs, targets)`` pairs.

    Returns:
        The state dict with new ``running_mean`` / ``running_var`` (other tensors unchanged).
    """
    work = load(copy.deepcopy(model), state).eval()
    for module in work.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
            module.train()
    with torch.no_grad():
        for inputs in iterate_inputs(batches):
            work(*inputs)
    fresh = work.state_dict()
    return {k: (fresh[k].detach().clone() if "running_" in k else v) for k, v in state.items()}


@dataclass(frozen=True)
class RepairTarget:
    """A tensor whose channels REPAIR renormalises and the parameters that do it.

    Args:
        node: fx node whose output is renormalised (a Linear/Conv, or the norm right after it).
        module: name of the module whose ``weight`` / ``bias`` are rescaled and shifted.
        dim: channel dimension of the node's output.
    """

    node: str
    module: str
    dim: int


def repair_targets(graph: fx.GraphModule, spec: PermutationSpec) -> list[RepairTarget]:
    """List the pre-activations REPAIR renormalises, in forward order.

    Every Linear/Conv whose output channels form a permutation group (hidden layers, not the
    head) is a target; when its only user is a BatchNorm/GroupNorm/LayerNorm, the norm's output
    is renormalised through the norm's affine parameters instead.

    Args:
        graph: a graph module from `traced_copy`.
        spec: the permutation spec of the same model.

    Returns:
        The targets.

    Raises:
        ConfigError: if a target module has no bias (or a norm has no affine parameters).
    """
    permuted = {ref.name for g in spec.groups.values() for ref in g.axes if ref.axis == 0}
    modules = dict(graph.named_modules())
    targets = []
    for node in graph.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], _LAYERS):
            continue
        if f"{node.target}.weight" not in permuted:
            continue
        target, name = node, str(node.target)
        users = list(node.users)
        if (
            len(users) == 1
            and users[0].op == "call_module"
            and isinstance(modules[users[0].target], _NORMS)
        ):
            target, name = users[0], str(users[0].target)
        module = modules[name]
        if getattr(module, "bias", None) is None or getattr(module, "weight", None) is None:
            raise ConfigError(
                f"repair: module {name!r} ({type(module).__name__}) has no weight and bias to "
                "renormalise its channels; use repair='bn_reset' or give it a bias"
            )
        dim = -1 if isinstance(module, (nn.Linear, nn.LayerNorm)) else 1
        targets.append(RepairTarget(str(target.name), name, dim))
    return targets


def channel_moments(
    graph: fx.GraphModule,
    state: Mapping[str, Tensor],
    batches: Sequence[Any],
    targets: Sequence[RepairTarget],
    reduce_sum: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, tuple[Tensor, Tensor]]:
    """Return each target's per-channel mean and standard deviation over the batches.

    Args:
        graph: a graph module from `traced_copy` (its weights are replaced by ``state``).
        state: the state dict to evaluate.
        batches: this rank's probe batches.
        targets: the tensors to measure.
        reduce_sum: all-reduce (sum) over ranks, or None.

    Returns:
        Node name -> ``(mean (C,), std (C,))`` in float64 (population statistics).
    """
    load(graph, state)
    sums: dict[str, Tensor] = {}
    for inputs in iterate_inputs(batches):
        _, found = run_capture(graph, inputs, [t.node for t in targets])
        for t in targets:
            x = found[t.node].movedim(t.dim, -1).reshape(-1, found[t.node].shape[t.dim])
            x = x.to(torch.float64)
            count = torch.full((1,), float(x.shape[0]), dtype=torch.float64)
            part = torch.cat([count, x.sum(0), (x * x).sum(0)])
            sums[t.node] = sums[t.node] + part if t.node in sums else part
    names = [t.node for t in targets]
    if reduce_sum is not None:
        flat = reduce_sum(torch.cat([sums[n] for n in names]))
        sums = dict(zip(names, torch.split(flat, [sums[n].numel() for n in names]), strict=True))
    out = {}
    for name in names:
        c = (sums[name].numel() - 1) // 2
        mean = sums[name][1 : 1 + c] / sums[name][0]
        var = (sums[name][1 + c :] / sums[name][0] - mean**2).clamp_min(0)
        out[name] = (mean, var.sqrt())
    return out


def repair_state(
    model: nn.Module,
    state_a: Mapping[str, Tensor],
    state_b: Mapping[str, Tensor],
    alpha: float,
    batches: Sequence[Any],
    spec: PermutationSpec | None = None,
    reduce_sum: Callable[[Tensor], Tensor] | None = None,
    eps: float = 1e-8,
) -> dict[str, Tensor]:
    """Return the interpolated state with REPAIR's renormalisation of every hidden channel.

    Each target's pre-activation channel (see `repair_targets`) gets the mean
    ``(1 - alpha) mu_a + alpha mu_b`` and standard deviation ``(1 - alpha) s_a + alpha s_b`` of
    the endpoints' channel, measured on ``batches`` in eval mode, by rescaling the target
    module's weight (output axis) and resetting its bias: the repaired state is an ordinary state
    of the same architecture (no wrapper), so it works with and without BatchNorm. Targets are
    repaired in forward order, each measured after the earlier ones are repaired, so the statistics
    are met exactly on the probe batches.

    Args:
        model: the architecture (not modified).
        state_a: state at ``alpha = 0``.
        state_b: state at ``alpha = 1``, aligned to ``a``.
        alpha: interpolation coefficient.
        batches: this rank's probe batches.
        spec: permutation spec of ``model`` (derived by tracing when None).
        reduce_sum: all-reduce (sum) over ranks, or None.
        eps: added to the measured standard deviation before dividing.

    Returns:
        The repaired state dict at ``alpha``.
    """
    return repair_states(model, state_a, state_b, [alpha], batches, spec, reduce_sum, eps)[0]


def repair_states(
    model: nn.Module,
    state_a: Mapping[str, Tensor],
    state_b: Mapping[str, Tensor],
    alphas: Sequence[float],
    batches: Sequence[Any],
    spec: PermutationSpec | None = None,
    reduce_sum: Callable[[Tensor], Tensor] | None = None,
    eps: float = 1e-8,
) -> list[dict[str, Tensor]]:
    """Return `repair_state` at every ``alpha``, tracing and measuring the endpoints once.

    Args:
        model: the architecture (not modified).
        state_a: state at ``alpha = 0``.
        state_b: state at ``alpha = 1``, aligned to ``a``.
        alphas: interpolation coefficients.
        batches: this rank's probe batches.
        spec: permutation spec of ``model`` (derived by tracing when None).
        reduce_sum: all-reduce (sum) over ranks, or None.
        eps: added to the measured standard deviation before dividing.

    Returns:
        The repaired state dicts, one per ``alpha``.
    """
    example = first_inputs(batches, None)
    spec = spec if spec is not None else permutation_spec(model, example)
    graph = traced_copy(model, example, spec.fixed)
    targets = repair_targets(graph, spec)
    goals_a = channel_moments(graph, state_a, batches, targets, reduce_sum)
    goals_b = channel_moments(graph, state_b, batches, targets, reduce_sum)
    states = []
    for alpha in alphas:
        state = interpolate_state(state_a, state_b, alpha)
        for target in targets:
            mean, std = channel_moments(graph, state, batches, [target], reduce_sum)[target.node]
            goal_mean = (1 - alpha) * goals_a[target.node][0] + alpha * goals_b[target.node][0]
            goal_std = (1 - alpha) * goals_a[target.node][1] + alpha * goals_b[target.node][1]
            scale = goal_std / (std + eps)
            weight, bias = f"{target.module}.weight", f"{target.module}.bias"
            shape = (-1,) + (1,) * (state[weight].dim() - 1)
            dtype = state[weight].dtype
            state[weight] = state[weight] * scale.to(dtype).reshape(shape)
            state[bias] = ((state[bias] - mean) * scale + goal_mean).to(dtype)
        states.append(state)
    return states


def interpolated_state(
    model: nn.Module,
    state_a: Mapping[str, Tensor],
    state_b: Mapping[str, Tensor],
    alpha: float,
    batches: Sequence[Any] | None = None,
    repair: Repair = "none",
    spec: PermutationSpec | None = None,
    reduce_sum: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Return the state at ``alpha`` on the segment from ``a`` to ``b``, repaired as asked.

    Args:
        model: the architecture (not modified).
        state_a: state at ``alpha = 0``.
        state_b: state at ``alpha = 1`` (aligned to ``a`` if wanted).
        alpha: interpolation coefficient.
        batches: probe batches (needed unless ``repair="none"``).
        repair: ``"none"`` (plain interpolation), ``"bn_reset"`` (BatchNorm statistics
            recomputed on the batches) or ``"repair"`` (REPAIR, see `repair_state`).
        spec: permutation spec of ``model`` for ``"repair"`` (traced when None).
        reduce_sum: all-reduce (sum) over ranks for ``"repair"``, or None.

    Returns:
        The state dict at ``alpha``.

    Raises:
        ConfigError: for an unknown ``repair`` or missing batches.
    """
    require(repair in REPAIRS, "repair", repair, f"one of {list(REPAIRS)}")
    if repair == "none":
        return interpolate_state(state_a, state_b, alpha)
    if not batches:
        raise ConfigError(f"batches: got none; repair={repair!r} needs probe batches")
    if repair == "bn_reset":
        return reset_batch_norm(model, interpolate_state(state_a, state_b, alpha), batches)
    return repair_state(model, state_a, state_b, alpha, batches, spec, reduce_sum)
