"""The network and extra points a scheduled probe measures: check, observe and resolve them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from lsuite.anchors import (
    WeightHistory,
    check_reachable,
    needs_history,
    parse_specs,
    resolve_points,
)
from lsuite.errors import require
from lsuite.probes.base import Probe


def point_specs(probe: Probe) -> dict[str, Any]:
    """Return the probe's ``name -> spec | [spec, ...]`` (empty when it declares none)."""
    declared = getattr(probe, "point_specs", None)
    return dict(declared()) if callable(declared) else {}


def check_points(probe: Probe, max_epochs: int | None, max_steps: int | None) -> None:
    """Check every declared spec now: parse it, read its file, and that the run reaches it.

    Args:
        probe: the probe.
        max_epochs: the trainer's limit (None or -1: none).
        max_steps: the trainer's limit (None or -1: none).

    Raises:
        ConfigError: naming ``<probe>.<point>`` for a spec that is invalid, a file that is
            missing or corrupt, or an ``epoch:N`` / ``step:N`` beyond the run's limits.
    """
    for key, spec in point_specs(probe).items():
        name = f"{probe.name}.{key}"
        parse_specs(spec, name, check_files=True)
        check_reachable(spec, max_epochs, max_steps, name)


def make_history(probe: Probe) -> WeightHistory | None:
    """Return a history that keeps what the probe's specs name, or None when none needs one."""
    specs = point_specs(probe)
    texts = [s for v in specs.values() for s in (v if isinstance(v, (list, tuple)) else [v])]
    if not any(needs_history(s) for s in texts):
        return None
    return WeightHistory(texts)


def trainable(module: nn.Module) -> dict[str, Tensor]:
    """Return the module's trainable parameters by name (no copies)."""
    return {n: p for n, p in module.named_parameters() if p.requires_grad}


def observe(history: WeightHistory | None, module: nn.Module, *, step: int, epoch: int) -> None:
    """Show the history the weights and buffers at ``step`` (it keeps what its specs name)."""
    if history is not None:
        buffers = dict(module.named_buffers())
        history.observe(trainable(module), buffers, step=step, epoch=epoch)


def resolve(
    probe: Probe, module: nn.Module, history: WeightHistory | None, dtype: torch.dtype | None
) -> dict[str, Any]:
    """Return the probe's points as ``run`` keyword arguments, on the module's device.

    Args:
        probe: the probe.
        module: the network being measured (its parameters are the reference keys and shapes).
        history: observed weights, or None.
        dtype: the probe dtype: parameter dicts are cast to it.

    Returns:
        ``name -> Params`` (or a list of them), ready for `measure_module`'s ``anchors``.
    """
    specs = point_specs(probe)
    if not specs:
        return {}
    like = {n: p.detach() for n, p in trainable(module).items()}
    buffers = None
    if getattr(probe, "point_buffers", False):  # the points carry their BatchNorm statistics
        buffers = {n: b.detach() for n, b in module.named_buffers()}
    points = resolve_points(specs, like, buffers, history=history)
    return {k: _cast(v, dtype) for k, v in points.items()} if dtype is not None else points


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, Mapping):
        return {k: _cast(v, dtype) for k, v in value.items()}
    if isinstance(value, list):
        return [_cast(v, dtype) for v in value]
    return value


def network(pl_module: LightningModule) -> nn.Module:
    """Return the network to measure: ``pl_module.probe_network()`` if defined, else the module."""
    method = getattr(pl_module, "probe_network", None)
    if callable(method):
        network = method()
        require(
            isinstance(network, nn.Module),
            "probe_network()",
            type(network).__name__,
            "an nn.Module",
        )
        return network
    return pl_module
