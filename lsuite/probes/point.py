"""A frozen point in weight space: a stateless forward plus detached parameters and buffers."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.stateless import _reparametrize_module

from lsuite.errors import ConfigError, require
from lsuite.functional.params import Params

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(outputs, targets) -> ()``: the mean loss over the batch."""

ForwardFn = Callable[[nn.Module, Any], Tensor]
"""``forward_fn(module, inputs) -> outputs``: how the network is called on a batch's inputs."""

BatchNormMode = Literal["eval", "train"]

PROBE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
"""The dtypes a probe may compute in (``probe_dtype``), by name."""


def call_module(module: nn.Module, inputs: Any) -> Tensor:
    """Return ``module(*inputs)`` for a tuple or list of inputs, else ``module(inputs)``."""
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    return module(*args)


@dataclass(frozen=True, eq=False)
class ModelPoint:
    """A model frozen at one point in weight space.

    The forward pass goes through ``skeleton``, a copy of the network whose parameters and buffers
    live on the meta device, so the values always come from the dicts passed in. Dropout is off;
    BatchNorm layers are in eval mode (running statistics) unless the point was made with
    ``bn_mode="train"`` (batch statistics; running-statistic updates land on ``buffers``, a copy).

    Every forward runs outside autocast (in the dtype of the point's tensors) and with
    ``scaled_dot_product_attention`` restricted to the math kernel, whose graph supports the
    double backward of Hessian-vector products (the fused CPU/flash kernels do not); training
    keeps its own kernels, since only the probe's forward is affected.

    Attributes:
        skeleton: stateless copy of the network; never holds real weights.
        params: trainable parameters, detached copies; this is weight space (``P`` entries).
        buffers: buffers and frozen (``requires_grad=False``) parameters, detached copies.
        loss_fn: ``loss_fn(outputs, targets)``, the mean loss over a batch.
        bn_mode: ``"eval"`` or ``"train"``, how BatchNorm layers normalise.
        forward_fn: ``forward_fn(skeleton, inputs)``, or None to call the skeleton itself.
        input_dtype: when set, floating inputs and targets are cast to it (the dtype the point's
            tensors were cast to by `snapshot`).
    """

    skeleton: nn.Module
    params: Params
    buffers: Params
    loss_fn: LossFn
    bn_mode: BatchNormMode = "eval"
    forward_fn: ForwardFn | None = None
    input_dtype: torch.dtype | None = None

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(iter(self.params.values())).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the parameters."""
        return next(iter(self.params.values())).dtype

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """Run the forwards inside: no autocast, SDPA on the math kernel (see the class doc)."""
        with (
            torch.autocast(self.device.type, enabled=False),
            sdpa_kernel(SDPBackend.MATH),
        ):
            yield

    def call(self, inputs: Any) -> Tensor:
        """Return the outputs of the skeleton as it is bound now (inside `context`).

        Used by evaluators that bind real tensors into the skeleton once for many forwards;
        `outputs` is the stateless entry point.

        Args:
            inputs: a batch's inputs (a tensor, or a tuple / list of positional arguments).

        Returns:
            The network's outputs, e.g. ``(B, C)`` logits.
        """
        inputs = self.cast(inputs)
        if self.forward_fn is None:
            return call_module(self.skeleton, inputs)
        return self.forward_fn(self.skeleton, inputs)

    def outputs(
        self, inputs: Any, params: Params | None = None, buffers: Params | None = None
    ) -> Tensor:
        """Return the outputs, e.g. ``(B, C)`` logits, at ``params`` (default: this point)."""
        state = {
            **(self.buffers if buffers is None else buffers),
            **(self.params if params is None else params),
        }
        inputs = self.cast(inputs)
        with self.context():
            if self.forward_fn is None:
                args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
                return functional_call(self.skeleton, state, args, strict=False)
            # what functional_call does around ``module(*args)``, around forward_fn instead
            with _reparametrize_module(self.skeleton, state, tie_weights=True, strict=False):
                return self.forward_fn(self.skeleton, inputs)

    def criterion(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Return ``loss_fn(outputs, targets)``, floating targets cast like the inputs."""
        return self.loss_fn(outputs, self.cast(targets))

    def loss(self, inputs: Any, targets: Tensor, params: Params | None = None) -> Tensor:
        """Return the mean loss ``()`` of one batch at ``params`` (default: this point)."""
        return self.criterion(self.outputs(inputs, params), targets)

    def with_params(self, params: Params) -> ModelPoint:
        """Return the same network at other weights (same keys and shapes as ``params``)."""
        return dataclasses.replace(self, params=params)

    def cast(self, value: Any) -> Any:
        """Cast floating tensors in ``value`` (nested tuples, lists, dicts) to ``input_dtype``."""
        if self.input_dtype is None:
            return value
        return _cast(value, self.input_dtype)


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(_cast(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    return value


def resolve_forward_fn(
    value: ForwardFn | str | None, module: nn.Module | None = None, key: str = "forward_fn"
) -> ForwardFn | None:
    """Return the forward function named by ``value``.

    ``value`` is a callable ``(module, inputs) -> outputs``; a dotted path to one
    (``"pkg.mod.fn"``, tried first when the text contains a dot and its module imports); or the
    name of a submodule to call instead of the module itself (``"model"``, ``"net.encoder"``:
    ``module.get_submodule(name)(*inputs)``), for a LightningModule without ``forward``.

    Args:
        value: the callable, path or submodule name; None for the module's own forward.
        module: when given, a submodule name is checked against it now.
        key: the argument name for error messages.

    Returns:
        The forward function, or None for the module's own forward.

    Raises:
        ConfigError: for a value of another type, or (with ``module``) a submodule it lacks.
    """
    if value is None or callable(value):
        return value
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{key}: got {value!r}; expected a callable (module, inputs) -> outputs, a dotted "
            "path to one, or the name of a submodule such as 'model'"
        )
    found = _import_callable(value)
    if found is not None:
        return found
    forward = _SubmoduleForward(value, key)
    if module is not None:
        forward.submodule(module)
    return forward


def _import_callable(path: str) -> ForwardFn | None:
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        return None
    try:
        found = getattr(importlib.import_module(module_name), attribute, None)
    except ImportError:
        return None
    return found if callable(found) and not isinstance(found, type) else None


class _SubmoduleForward:
    """``forward_fn`` that calls a named submodule: ``module.get_submodule(name)(*inputs)``."""

    def __init__(self, name: str, key: str) -> None:
        self.name = name
        self.key = key

    def submodule(self, module: nn.Module) -> nn.Module:
        """Return the submodule, or raise a ConfigError listing the module's children."""
        try:
            return module.get_submodule(self.name)
        except AttributeError:
            children = [n for n, _ in module.named_children()]
            raise ConfigError(
                f"{self.key}: got {self.name!r}; {type(module).__name__} has no submodule "
                f"{self.name!r} (its children: {children}); expected a submodule name, a "
                "callable or a dotted path"
            ) from None

    def __call__(self, module: nn.Module, inputs: Any) -> Tensor:
        return call_module(self.submodule(module), inputs)

    def __repr__(self) -> str:
        return f"forward_fn({self.name!r})"


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


def resolve_dtype(value: torch.dtype | str | None, key: str = "probe_dtype") -> torch.dtype | None:
    """Return the probe dtype named by ``value`` (``float32``, ``float64``, a dtype, or None).

    Raises:
        ConfigError: for any other value.
    """
    if value is None or value in PROBE_DTYPES.values():
        return value  # type: ignore[return-value]
    if isinstance(value, str) and value.removeprefix("torch.") in PROBE_DTYPES:
        return PROBE_DTYPES[value.removeprefix("torch.")]
    raise ConfigError(f"{key}: got {value!r}; expected one of {[*PROBE_DTYPES, None]}")


def snapshot(
    module: nn.Module,
    loss_fn: LossFn,
    *,
    bn_mode: BatchNormMode = "eval",
    skeleton: nn.Module | None = None,
    share: Iterable[object] = (),
    forward_fn: ForwardFn | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> ModelPoint:
    """Freeze ``module`` into a `ModelPoint`; the module itself is never modified.

    Args:
        module: the live network; parameter and buffer keys are those of the whole module (also
            with ``forward_fn``), so point specs and checkpoints keep their keys.
        loss_fn: ``loss_fn(outputs, targets)``, mean loss over a batch.
        bn_mode: how BatchNorm normalises while probing (see `ModelPoint`).
        skeleton: a skeleton from `make_skeleton` to reuse (made once per model).
        share: objects not to copy when making the skeleton.
        forward_fn: how to call the network (see `resolve_forward_fn`); None: ``module(inputs)``.
        dtype: ``torch.float32`` / ``torch.float64`` (or their names) to cast floating
            parameters, buffers, inputs and floating targets to (e.g. float32 probes of a
            ``bf16-mixed`` run); None keeps the module's dtypes.

    Returns:
        The point, with detached copies of the trainable parameters and of the buffers.
    """
    dtype = resolve_dtype(dtype)
    if skeleton is None:
        skeleton = make_skeleton(module, bn_mode, share)
    forward = resolve_forward_fn(forward_fn, skeleton)
    params: Params = {}
    buffers: Params = {}
    for name, p in module.named_parameters():
        (params if p.requires_grad else buffers)[name] = _copy(p, dtype)
    for name, b in module.named_buffers():
        buffers[name] = _copy(b, dtype)
    return ModelPoint(skeleton, params, buffers, loss_fn, bn_mode, forward, dtype)


def _copy(tensor: Tensor, dtype: torch.dtype | None) -> Tensor:
    tensor = tensor.detach()
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        return tensor.to(dtype)
    return tensor.clone()


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
