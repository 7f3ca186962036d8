"""Count top-1 hits (or use a given accuracy function) of a batch's outputs."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import Tensor

from lsuite.errors import ConfigError

AccuracyFn = Callable[[Tensor, Tensor], Tensor]
"""``accuracy_fn(outputs, targets) -> ()``: the batch's mean accuracy, in [0, 1]."""


def class_targets(outputs: Tensor, targets: Tensor) -> Tensor | None:
    """Return the targets to compare with ``outputs.argmax(1)``, or None when accuracy is undefined.

    Top-1 accuracy is computed when the targets are integer class indices and either
    ``outputs`` has one more dimension (``(B, C, ...)`` logits, ``(B, ...)`` targets, the layout
    of ``cross_entropy``) or ``outputs`` is ``(N, C)`` and the targets hold ``N`` entries in any
    shape (``(B*T, V)`` logits of a language model with ``(B, T)`` targets: flattened). Otherwise
    (float targets, other shapes) it is None; pass an ``accuracy_fn`` to the probe then.

    Args:
        outputs: one batch's outputs.
        targets: its targets.

    Returns:
        The targets, flattened where needed, or None.
    """
    if targets.is_floating_point() or targets.is_complex() or outputs.dim() < 2:
        return None
    if outputs.dim() == targets.dim() + 1:
        return targets
    if outputs.dim() == 2 and targets.numel() == outputs.shape[0]:
        return targets.reshape(-1)
    return None


def resolve_accuracy_fn(value: AccuracyFn | str | None) -> AccuracyFn | None:
    """Return ``value`` as an accuracy function: a callable, a dotted path to one, or None.

    Args:
        value: ``accuracy_fn(outputs, targets) -> ()`` (mean accuracy of a batch), its dotted
            path (``"pkg.module.fn"``), or None for top-1 accuracy (see `class_targets`).

    Returns:
        The callable, or None.

    Raises:
        ConfigError: when ``value`` is neither, or the path does not import.
    """
    if value is None or callable(value):
        return value
    module_name, _, attribute = value.rpartition(".") if isinstance(value, str) else ("", "", "")
    found = None
    if module_name:
        try:
            found = getattr(importlib.import_module(module_name), attribute, None)
        except ImportError:
            found = None
    if not callable(found):
        raise ConfigError(
            f"accuracy_fn: got {value!r}; expected a callable (outputs, targets) -> mean "
            "accuracy, a dotted path to one ('pkg.module.fn'), or null"
        )
    return found


def correct_count(
    outputs: Tensor, targets: Tensor, accuracy_fn: AccuracyFn | None = None
) -> Tensor:
    """Return the number of hits (top-1 or ``accuracy_fn`` times the targets' count), or nan."""
    if accuracy_fn is not None:
        mean = torch.as_tensor(accuracy_fn(outputs, targets), device=outputs.device)
        return mean.to(torch.float64) * targets.numel()  # a float64 mean in `reduce_values`
    classes = class_targets(outputs, targets)
    if classes is not None:
        return (outputs.argmax(1) == classes).sum()  # becomes a float64 mean in `reduce_values`
    return torch.full((), float("nan"), dtype=outputs.dtype, device=outputs.device)
