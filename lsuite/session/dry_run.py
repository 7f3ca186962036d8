"""Run a probe's forward and loss once on one batch, so a mismatch fails before any training."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from lsuite.errors import ConfigError
from lsuite.probes.data_source import Batch, BatchAdapter
from lsuite.probes.point import BatchNormMode, LossFn, snapshot
from lsuite.session.guard import preserved_training_state


def dry_run(
    name: str,
    module: nn.Module,
    raw_batch: Any,
    *,
    batch_adapter: BatchAdapter,
    to_device: Callable[[Batch], Batch],
    loss_fn: LossFn,
    forward_fn: Any = None,
    bn_mode: BatchNormMode = "eval",
    dtype: torch.dtype | None = None,
    skeleton: nn.Module | None = None,
) -> None:
    """Check that ``batch_adapter``, the forward and ``loss_fn`` fit the model on one batch.

    Nothing of the module changes (the training-state guard restores it), no gradient is taken.

    Args:
        name: the probe's name, for the message.
        module: the network to measure.
        raw_batch: one batch as the data loader yields it.
        batch_adapter: maps ``raw_batch`` to ``(inputs, targets)``.
        to_device: moves ``(inputs, targets)`` to the module's device.
        loss_fn: ``loss_fn(outputs, targets)``, the mean loss over a batch.
        forward_fn: the probe's forward function (see `snapshot`); the module's own when None.
        bn_mode: how BatchNorm normalises while probing.
        dtype: the probe dtype.
        skeleton: a skeleton from `make_skeleton` to reuse.

    Raises:
        ConfigError: one line naming the probe, the key (``batch_adapter``, ``forward_fn`` or
            ``loss_fn``) and the shapes involved.
    """
    adapter_name = _name(batch_adapter)
    try:
        adapted = batch_adapter(raw_batch)
    except Exception as error:  # any failure of user code is reported as a config error
        raise ConfigError(
            f"probe {name}: batch_adapter={adapter_name} fails on a batch {_shape(raw_batch)}: "
            f"{type(error).__name__}: {error}"
        ) from error
    if not (isinstance(adapted, (tuple, list)) and len(adapted) == 2):
        raise ConfigError(
            f"probe {name}: batch_adapter={adapter_name} returned {_shape(adapted)}; expected "
            "(inputs, targets)"
        )
    if not isinstance(adapted[1], Tensor) or adapted[1].ndim == 0:
        raise ConfigError(
            f"probe {name}: batch_adapter={adapter_name} returned targets {_shape(adapted[1])}; "
            "expected a tensor with the batch dimension first, (B, ...)"
        )
    inputs, targets = to_device((adapted[0], adapted[1]))
    # a broadcasting warning of the loss would only precede the error below
    with preserved_training_state(module), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        point = snapshot(
            module, loss_fn, bn_mode=bn_mode, skeleton=skeleton, forward_fn=forward_fn, dtype=dtype
        )
        try:
            outputs = point.outputs(inputs)
        except Exception as error:  # any failure of user code is reported as a config error
            key = f"forward_fn={_name(forward_fn)}" if forward_fn is not None else "the forward"
            raise ConfigError(
                f"probe {name}: {key} fails on inputs {_shape(inputs)}: "
                f"{type(error).__name__}: {error}"
            ) from error
        try:
            loss = point.criterion(outputs, targets)
        except Exception as error:  # any failure of user code is reported as a config error
            raise ConfigError(
                f"probe {name}: loss_fn={_name(loss_fn)} does not fit the model: outputs "
                f"{_shape(outputs)}, targets {_shape(targets)}: {type(error).__name__}: {error}"
            ) from error
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ConfigError(
            f"probe {name}: loss_fn={_name(loss_fn)} returned {_shape(loss)} for outputs "
            f"{_shape(outputs)} and targets {_shape(targets)}; expected the mean loss, a scalar"
        )


def _name(fn: Any) -> str:
    """Return ``package.module.name`` of a function, or its repr."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if module and qualname:
        return f"{module}.{qualname}"
    return repr(fn)


def _shape(value: Any) -> str:
    """Describe a batch, tensor or nested structure by its shapes, e.g. ``(32, 10) float32``."""
    if isinstance(value, Tensor):
        return f"{tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_shape(v) for v in value[:4])
        return f"{type(value).__name__}[{inner}{', ...' if len(value) > 4 else ''}]"
    if isinstance(value, dict):
        inner = ", ".join(f"{k}: {_shape(v)}" for k, v in list(value.items())[:4])
        return f"dict{{{inner}}}"
    return type(value).__name__
