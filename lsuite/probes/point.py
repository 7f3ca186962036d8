"""A frozen point in weight space: a stateless forward plus detached parameters and buffers."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from lsuite.errors import require
from lsuite.functional.params import Params

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(outputs, targets) -> ()``: the mean loss over the batch."""

BatchNormMode = Literal["eval", "train"]


@dataclass(frozen=True, eq=False)
class ModelPoint:
    """A model frozen at one point in weight space.

    The forward pass goes through ``skeleton``, a copy of the network whose parameters and buffers
    live on the meta device, so the values always come from the dicts passed in. Dropout is off;
    BatchNorm layers are in eval mode (running statistics) unless the point was made with
    ``bn_mode="train"`` (batch statistics; running-statistic updates land on ``buffers``, a copy).

    Attributes:
        skeleton: stateless copy of the network; never holds real weights.
        params: trainable parameters, detached copies; this is weight space (``P`` entries).
        buffers: buffers and frozen (``requires_grad=False``) parameters, detached copies.
        loss_fn: ``loss_fn(outputs, targets)``, the mean loss over a batch.
        bn_mode: ``"eval"`` or ``"train"``, how BatchNorm layers normalise.
    """

    skeleton: nn.Module
    params: Params
    buffers: Params
    loss_fn: LossFn
    bn_mode: BatchNormMode = "eval"

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(iter(self.params.values())).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the parameters."""
        return next(iter(self.params.values())).dtype

    def outputs(
        self, inputs: Any, params: Params | None = None, buffers: Params | None = None
    ) -> Tensor:
        """Return the outputs, e.g. ``(B, C)`` logits, at ``params`` (default: this point)."""
        state = {
            **(self.buffers if buffers is None else buffers),
            **(self.params if params is None else params),
        }
        args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        return functional_call(self.skeleton, state, args, strict=False)

    def loss(self, inputs: Any, targets: Tensor, params: Params | None = None) -> Tensor:
        """Return the mean loss ``()`` of one batch at ``params`` (default: this point)."""
        return self.loss_fn(self.outputs(inputs, params), targets)

    def with_params(self, params: Params) -> ModelPoint:
        """Return the same network at other weights (same keys and shapes as ``params``)."""
        return dataclasses.replace(self, params=params)


def make_skeleton(
    module: nn.Module, bn_mode: BatchNormMode = "eval", share: Iterable[object] = ()
) -> nn.Module:
    """Copy ``module`` with every parameter and buffer on the meta device (no weight memory).

    Args:
        module: the live network; not modified.
        bn_mode: ``"eval"`` (all submodules in eval mode) or ``"train"`` (BatchNorm only).
        share: objects referenced by the module that must not be copied (e.g. a Lightning Trainer).

    Returns:
        The stateless copy, its modes set for probing.

    Raises:
        ConfigError: for an unknown ``bn_mode``.
    """
    require(bn_mode in ("eval", "train"), "bn_mode", bn_mode, "one of 'eval', 'train'")
    memo: dict[int, Any] = {id(obj): obj for obj in share}
    for p in module.parameters():
        memo[id(p)] = nn.Parameter(
            torch.empty_like(p, device="meta"), requires_grad=p.requires_grad
        )
    for b in module.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    skeleton = copy.deepcopy(module, memo)
    skeleton.eval()
    if bn_mode == "train":
        for m in skeleton.modules():
            if isinstance(m, _BatchNorm):
                m.train()
    return skeleton


def snapshot(
    module: nn.Module,
    loss_fn: LossFn,
    *,
    bn_mode: BatchNormMode = "eval",
    skeleton: nn.Module | None = None,
    share: Iterable[object] = (),
) -> ModelPoint:
    """Freeze ``module`` into a `ModelPoint`; the module itself is never modified.

    Args:
        module: the live network.
        loss_fn: ``loss_fn(outputs, targets)``, mean loss over a batch.
        bn_mode: how BatchNorm normalises while probing (see `ModelPoint`).
        skeleton: a skeleton from `make_skeleton` to reuse (made once per model).
        share: objects not to copy when making the skeleton.

    Returns:
        The point, with detached copies of the trainable parameters and of the buffers.
    """
    if skeleton is None:
        skeleton = make_skeleton(module, bn_mode, share)
    params: Params = {}
    buffers: Params = {}
    for name, p in module.named_parameters():
        (params if p.requires_grad else buffers)[name] = p.detach().clone()
    for name, b in module.named_buffers():
        buffers[name] = b.detach().clone()
    return ModelPoint(skeleton, params, buffers, loss_fn, bn_mode)


def as_params(weights: nn.Module | dict[str, Tensor] | Params, like: Params) -> Params:
    """Return ``weights``' entries for the keys of ``like``, detached, on its device and dtype.

    Args:
        weights: a module or a (state) dict holding at least the keys of ``like``.
        like: the reference parameters (keys, device, dtype).

    Returns:
        Detached copies with the keys and shapes of ``like``.

    Raises:
        ConfigError: when a key is missing or a shape differs.
    """
    state = dict(weights.state_dict()) if isinstance(weights, nn.Module) else dict(weights)
    missing = [k for k in like if k not in state]
    require(
        not missing,
        "weights",
        f"missing keys {missing[:5]}",
        f"the keys of the model ({len(like)})",
    )
    out: Params = {}
    for k, ref in like.items():
        v = state[k]
        require(
            v.shape == ref.shape, f"weights[{k!r}]", tuple(v.shape), f"shape {tuple(ref.shape)}"
        )
        out[k] = v.detach().to(device=ref.device, dtype=ref.dtype).clone()
    return out
