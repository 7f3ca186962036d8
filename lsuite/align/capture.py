"""Run a traced copy of a model on probe batches and capture named intermediate tensors."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor, nn

from lsuite.align.tracer import trace
from lsuite.errors import ConfigError


def batch_inputs(batch: Any) -> tuple[Tensor, ...]:
    """Return the model inputs of a batch: ``x`` of ``(x, y)`` / ``[x, y]``, or the batch itself.

    Args:
        batch: a tensor or an ``(inputs, targets)`` pair.

    Returns:
        The positional inputs of the forward, as a tuple.

    Raises:
        ConfigError: for anything else.
    """
    if isinstance(batch, Tensor):
        return (batch,)
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return (batch[0],)
    raise ConfigError(
        f"batches: got an item of type {type(batch).__name__}; expected a tensor or an "
        "(inputs, targets) pair"
    )


def first_inputs(batches: Sequence[Any] | None, example_inputs: Any) -> tuple[Tensor, ...]:
    """Return ``example_inputs`` as a tuple, or the inputs of the first batch.

    Args:
        batches: probe batches, or None.
        example_inputs: a tensor, a tuple of tensors, or None.

    Returns:
        Positional inputs for tracing.

    Raises:
        ConfigError: when both are missing.
    """
    if example_inputs is not None:
        return (example_inputs,) if isinstance(example_inputs, Tensor) else tuple(example_inputs)
    if batches:
        return batch_inputs(batches[0])
    raise ConfigError("example_inputs: got None and no batches; pass one of them")


def traced_copy(
    model: nn.Module, example_inputs: tuple[Tensor, ...], fixed: Sequence[str] = ()
) -> fx.GraphModule:
    """Trace an eval-mode copy of ``model`` (``model`` itself is not touched).

    Args:
        model: the network.
        example_inputs: positional inputs for the trace.
        fixed: modules kept as opaque leaves (as in the spec).

    Returns:
        The graph module, in eval mode, holding its own copy of the weights.
    """
    return trace(copy.deepcopy(model).eval(), example_inputs, fixed).eval()


class _Capture(fx.Interpreter):
    """Interpreter that keeps the outputs of the nodes named in ``wanted``."""

    def __init__(self, module: fx.GraphModule, wanted: set[str]) -> None:
        super().__init__(module)
        self.wanted = wanted
        self.found: dict[str, Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.wanted:
            self.found[n.name] = out
        return out


def run_capture(
    module: fx.GraphModule, inputs: tuple[Tensor, ...], wanted: Iterable[str]
) -> tuple[Any, dict[str, Tensor]]:
    """Run ``module`` on ``inputs`` without gradients and return its output and the named nodes.

    Args:
        module: a graph module from `traced_copy`.
        inputs: positional inputs.
        wanted: node names to capture.

    Returns:
        ``(output, {node name: tensor})``.
    """
    interpreter = _Capture(module, set(wanted))
    with torch.no_grad():
        out = interpreter.run(*inputs)
    return out, interpreter.found


def load(module: nn.Module, state: Mapping[str, Tensor]) -> nn.Module:
    """Copy ``state`` into ``module`` in place (keys the module lacks are ignored) and return it.

    Args:
        module: a private copy (a graph module from `traced_copy` or a deep copy).
        state: state dict.

    Returns:
        ``module``.
    """
    own = module.state_dict()
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return module


def iterate_inputs(batches: Iterable[Any]) -> Iterator[tuple[Tensor, ...]]:
    """Yield the model inputs of every batch.

    Args:
        batches: probe batches.

    Yields:
        Positional inputs of each batch.
    """
    for batch in batches:
        yield batch_inputs(batch)
