"""Derive a permutation spec from a model by tracing its forward with ``torch.fx``."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.fx.passes.shape_prop import ShapeProp

from lsuite.align.propagation import propagate
from lsuite.align.spec import PermutationSpec
from lsuite.align.tracer import trace
from lsuite.errors import ConfigError


def permutation_spec(
    model: nn.Module,
    example_inputs: Tensor | Sequence[Tensor],
    fixed: Sequence[str] = (),
) -> PermutationSpec:
    """Derive the permutation spec of ``model`` by tracing its forward with ``torch.fx``.

    Every hidden axis created by a Linear, Conv (1-D/2-D/3-D) or Embedding starts a permutation
    group; elementwise activations, dropout, pooling, reductions over other axes, flatten/view and
    BatchNorm/LayerNorm carry it along (BatchNorm's weight, bias, running mean and variance are
    permuted; ``num_batches_tracked`` is not); elementwise binary ops (residual additions) merge
    the groups of their operands, so a residual stream shares one permutation. GroupNorm
    restricts its group to permutations within each of its channel groups (the ``chunk`` of the
    group; permuting whole groups would also be valid but is not searched). Axes that reach the
    network's input or output, or that an op cannot permute, are held fixed: slicing, indexing or
    padding a channel axis (so ResNet's ``shortcut: pad`` holds every residual stream fixed and
    aligns only the inner channels of the blocks), grouped convolutions other than depthwise.

    Args:
        model: the network; it is not modified (a copy is traced and run once in eval mode).
        example_inputs: one input tensor or a tuple of positional inputs.
        fixed: names of modules (as in ``named_modules``) to treat as opaque: their inputs and
            outputs are held fixed instead of raising for an op the tracer cannot permute.

    Returns:
        The spec; groups are named after the layer that creates them.

    Raises:
        ConfigError: if the model cannot be traced, or uses an op or module that cannot be
            permuted (naming the module and the op) outside ``fixed``.
    """
    work = copy.deepcopy(model).eval()
    names = {name for name, _ in work.named_modules()}
    for name in fixed:
        if name not in names:
            raise ConfigError(f"fixed: got module {name!r}; the model has no module of that name")
    inputs = (example_inputs,) if isinstance(example_inputs, Tensor) else tuple(example_inputs)
    graph_module = trace(work, inputs, fixed)
    with torch.no_grad():
        ShapeProp(graph_module).propagate(*inputs)
    state = dict(work.state_dict())
    return propagate(graph_module, state, tuple(fixed))
