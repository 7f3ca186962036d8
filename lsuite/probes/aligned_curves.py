"""Aligned and repaired interpolation curves: the start point permuted onto the measured one.

`Interpolation` with ``align`` / ``repair`` uses this module: the network of a `ModelPoint` is
rebuilt as a real module (its skeleton's architecture with the point's tensors), the start
weights are permuted to match the measured weights with `lsuite.align` (the measured weights stay
fixed), and each curve kind becomes a family of points that `lsuite.evaluate.evaluate_points`
evaluates like the naive segment.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lsuite.align.activation_matching import activation_matching
from lsuite.align.apply import apply_permutation
from lsuite.align.repair import repair_states
from lsuite.align.spec import PermutationSpec
from lsuite.align.tracing import permutation_spec
from lsuite.align.weight_matching import weight_matching
from lsuite.errors import ConfigError
from lsuite.functional.params import Params
from lsuite.probes.data_source import DataSource
from lsuite.probes.point import ModelPoint, _SubmoduleForward

ALIGNS = ("none", "weight", "activation")
"""How the start point is aligned to the measured one."""


def curve_kind(align: str, repair: str) -> str:
    """Return the name of a curve: ``"weight"``, ``"weight_repair"``, ``"repair"``, ...

    Args:
        align: ``"none"``, ``"weight"`` or ``"activation"``.
        repair: ``"none"``, ``"bn_reset"`` or ``"repair"``.

    Returns:
        The name; ``"naive"`` for ``("none", "none")``.
    """
    parts = [p for p in (align, repair) if p != "none"]
    return "_".join(parts) if parts else "naive"


class StackedPoints:
    """Points given as the rows of an ``(N, P)`` tensor (a `lsuite.evaluate.Points` family).

    Args:
        rows: ``(N, P)`` flat parameters.
    """

    def __init__(self, rows: Tensor) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def fill(self, index: int, out: Tensor) -> None:
        """Write point ``index``, shape ``(P,)``, into ``out``."""
        out.copy_(self.rows[index])

    def stack(self, indices: slice) -> Tensor:
        """Return the points ``indices`` as ``(K, P)`` rows."""
        return self.rows[indices]


@dataclass
class PointNetwork:
    """The network of a point as a real module, and how its keys map to the point's.

    Attributes:
        module: a real module (not the skeleton) holding the measured weights.
        prefix: the module's key prefix in the point (``"net."``, or ``""``).
        inputs: the model inputs of the probe batches used for alignment and repair.
        reduce_sum: all-reduce (sum) over ranks of the batches' statistics.
    """

    module: nn.Module
    prefix: str
    inputs: list[tuple[Tensor, ...]]
    reduce_sum: Callable[[Tensor], Tensor] | None

    def state(
        self, point: ModelPoint, params: Params, buffers: Params | None = None
    ) -> dict[str, Tensor]:
        """Return the module's state dict with ``params`` and ``buffers`` (point keys).

        Buffers missing from ``buffers`` (all of them when None) are the point's.
        """
        merged = {**point.buffers, **(buffers or {}), **params}
        n = len(self.prefix)
        return {k[n:]: v for k, v in merged.items() if k.startswith(self.prefix)}

    def params(self, point: ModelPoint, state: dict[str, Tensor]) -> Params:
        """Return the point's trainable parameters read from a module state dict."""
        n = len(self.prefix)
        return {
            k: state[k[n:]] if k.startswith(self.prefix) else v for k, v in point.params.items()
        }

    def buffers(self, like: Params, state: dict[str, Tensor]) -> Params:
        """Return the buffers with the keys of ``like`` (point keys) read from a state dict."""
        n = len(self.prefix)
        return {k: state[k[n:]] if k.startswith(self.prefix) else v for k, v in like.items()}


def point_network(point: ModelPoint, source: DataSource) -> PointNetwork:
    """Rebuild the point's network as a real module for tracing, matching and repair.

    The module is the skeleton's submodule named by ``forward_fn`` (a submodule name), or the
    smallest submodule holding every parameter and buffer whose outputs equal the point's on the
    first batch (e.g. a LightningModule's ``net``), or the skeleton itself.

    Args:
        point: the measured point.
        source: the probe batches (their inputs trace the network and feed the statistics).

    Returns:
        The network, its key prefix and the batch inputs.

    Raises:
        ConfigError: for a ``forward_fn`` that is not a submodule name.
    """
    inputs = [_as_tuple(point.cast(x)) for x, _ in source.batches]
    if isinstance(point.forward_fn, _SubmoduleForward):
        name = point.forward_fn.name
        return PointNetwork(
            _materialise(point, point.forward_fn.submodule(point.skeleton), f"{name}."),
            f"{name}.",
            inputs,
            source.sum if source.world_size > 1 else None,
        )
    if point.forward_fn is not None:
        raise ConfigError(
            f"align: got forward_fn {point.forward_fn!r}; alignment traces a module, so "
            "forward_fn must be None or the name of a submodule (e.g. 'net')"
        )
    reduce = source.sum if source.world_size > 1 else None
    want = point.outputs(list(inputs[0])) if inputs else None
    for prefix, sub in _covering(point):
        module = _materialise(point, sub, prefix)
        if want is None:
            return PointNetwork(module, prefix, inputs, reduce)
        with torch.no_grad():
            got = module(*inputs[0])
        if isinstance(got, Tensor) and got.shape == want.shape and torch.allclose(got, want):
            return PointNetwork(module, prefix, inputs, reduce)
    return PointNetwork(_materialise(point, point.skeleton, ""), "", inputs, reduce)


def aligned_start(
    network: PointNetwork,
    point: ModelPoint,
    start: Params,
    method: str,
    seed: int,
    spec: PermutationSpec,
    start_buffers: Params | None = None,
) -> tuple[Params, Params, float]:
    """Return the start weights and buffers permuted to match the point, and the function check.

    Args:
        network: the point's network.
        point: the measured point (held fixed).
        start: the start weights (point keys).
        method: ``"weight"`` or ``"activation"``.
        seed: weight matching's visiting order.
        spec: the network's permutation spec.
        start_buffers: the start's own buffers (BatchNorm statistics, point keys), permuted
            with its weights; None: the start runs with the point's buffers.

    Returns:
        ``(aligned start weights, their buffers (the keys of start_buffers; empty when None),
        root-mean-square output change)``; the change is over the probe batches of all ranks
        (0 up to rounding).
    """
    end_state = network.state(point, point.params)
    start_state = network.state(point, start, start_buffers)
    if method == "weight":
        perms = weight_matching(spec, end_state, start_state, seed=seed).perms
    else:
        other = _loaded(network.module, start_state)
        perms = activation_matching(
            spec, network.module, other, network.inputs, reduce_sum=network.reduce_sum
        ).perms
    permuted = apply_permutation(spec, perms, start_state)
    before, after = _loaded(network.module, start_state), _loaded(network.module, permuted)
    total = torch.zeros(2, dtype=torch.float64, device=point.device)
    with torch.no_grad():
        for inputs in network.inputs:
            gap = (before(*inputs) - after(*inputs)).double()
            total += torch.stack([gap.pow(2).sum(), torch.tensor(float(gap.numel()))])
    if network.reduce_sum is not None:
        total = network.reduce_sum(total)
    diff = float((total[0] / total[1].clamp_min(1)).sqrt())
    buffers = network.buffers(start_buffers, permuted) if start_buffers else {}
    return network.params(point, permuted), buffers, diff


def repaired_rows(
    network: PointNetwork,
    point: ModelPoint,
    start: Params,
    alphas: Sequence[float],
    spec: PermutationSpec,
    flatten: Callable[[Params], Tensor],
    start_buffers: Params | None = None,
) -> Tensor:
    """Return REPAIR's renormalised weights at every ``alpha`` as ``(N, P)`` flat rows.

    Args:
        network: the point's network.
        point: the end point (``alpha = 1``).
        start: the (aligned) start weights (``alpha = 0``).
        alphas: grid positions.
        spec: the network's permutation spec.
        flatten: params -> ``(P,)`` in the point's key order.
        start_buffers: the (aligned) start's buffers; None: the point's. The statistics are
            measured with the buffers interpolated along the line, as the curve evaluates them.

    Returns:
        The rows.
    """
    state_a = network.state(point, start, start_buffers)
    state_b = network.state(point, point.params)
    states = repair_states(
        network.module,
        state_a,
        state_b,
        [float(alpha) for alpha in alphas],
        network.inputs,
        spec,
        reduce_sum=network.reduce_sum,
    )
    return torch.stack([flatten(network.params(point, state)) for state in states])


def network_spec(network: PointNetwork) -> PermutationSpec:
    """Return the permutation spec of the network, traced on the first batch."""
    if not network.inputs:
        raise ConfigError("align: got no probe batches; alignment needs probe batches to trace")
    return permutation_spec(network.module, network.inputs[0])


def _as_tuple(inputs: object) -> tuple[Tensor, ...]:
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)  # type: ignore[arg-type]


def _covering(point: ModelPoint) -> list[tuple[str, nn.Module]]:
    """Return the proper submodules holding every tensor of the point, smallest first."""
    keys = [*point.params, *point.buffers]
    found = []
    for name, sub in point.skeleton.named_modules():
        if name and all(k.startswith(f"{name}.") for k in keys):
            found.append((f"{name}.", sub))
    found.sort(key=lambda item: -len(item[0]))
    return found


def _materialise(point: ModelPoint, sub: nn.Module, prefix: str) -> nn.Module:
    trainer = getattr(sub, "_trainer", None)
    memo = {id(trainer): trainer} if trainer is not None else {}
    module = copy.deepcopy(sub, memo).to_empty(device=point.device)
    state = {
        k[len(prefix) :]: v
        for k, v in {**point.buffers, **point.params}.items()
        if k.startswith(prefix)
    }
    module.load_state_dict(state, strict=False, assign=True)
    return module.eval()


def _loaded(module: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    trainer = getattr(module, "_trainer", None)
    memo = {id(trainer): trainer} if trainer is not None else {}
    other = copy.deepcopy(module, memo)
    other.load_state_dict(state, strict=False, assign=True)
    return other.eval()
