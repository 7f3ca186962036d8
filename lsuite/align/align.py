"""Align one network to another: a permuted copy of ``other`` that computes the same function."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lsuite.align.activation_matching import activation_matching
from lsuite.align.apply import apply_permutation
from lsuite.align.capture import first_inputs, iterate_inputs
from lsuite.align.spec import PermutationSpec, check_spec
from lsuite.align.tracing import permutation_spec
from lsuite.align.weight_matching import weight_matching
from lsuite.errors import ConfigError, require

Method = Literal["weight", "activation"]
_METHODS = ("weight", "activation")
_TOLERANCE = 1e-4


@dataclass(frozen=True)
class AlignResult:
    """The aligned copy of ``other`` and how it was found.

    Args:
        module: a new module: ``other`` with its units permuted to match ``reference``.
        perms: group name -> ``(C,)`` int64 permutation applied to ``other``.
        spec: the permutation spec used.
        max_output_diff: largest absolute difference between the outputs of ``module`` and
            ``other`` on the check inputs (eval mode); 0 up to rounding.
        relative_output_diff: ``max_output_diff`` divided by the largest absolute output.
        method: ``"weight"`` or ``"activation"``.
        objective: weight matching's objective per sweep (empty for activation matching).
    """

    module: nn.Module
    perms: dict[str, Tensor]
    spec: PermutationSpec
    max_output_diff: float
    relative_output_diff: float
    method: str
    objective: list[float]


def check_same_architecture(reference: nn.Module, other: nn.Module) -> None:
    """Raise unless both models have the same state-dict keys and shapes.

    Args:
        reference: first model.
        other: second model.

    Raises:
        ConfigError: naming the first key that differs and both shapes.
    """
    a, b = reference.state_dict(), other.state_dict()
    for key in list(a) + [k for k in b if k not in a]:
        shape_a = tuple(a[key].shape) if key in a else "missing"
        shape_b = tuple(b[key].shape) if key in b else "missing"
        if shape_a != shape_b:
            raise ConfigError(
                f"align: the models have different architectures: key {key!r} has shape "
                f"{shape_a} in reference and {shape_b} in other"
            )


def output_difference(
    module_a: nn.Module, module_b: nn.Module, inputs: Sequence[tuple[Tensor, ...]]
) -> tuple[float, float]:
    """Return the largest absolute and relative output difference of two modules (eval mode).

    Args:
        module_a: first module (a copy is evaluated; the module is not touched).
        module_b: second module (likewise).
        inputs: positional inputs to evaluate on.

    Returns:
        ``(max |a - b|, max |a - b| / max |a|)``.
    """
    first, second = copy.deepcopy(module_a).eval(), copy.deepcopy(module_b).eval()
    largest, scale = 0.0, 0.0
    with torch.no_grad():
        for args in inputs:
            out_a, out_b = first(*args), second(*args)
            largest = max(largest, float((out_a - out_b).abs().max()))
            scale = max(scale, float(out_a.abs().max()))
    return largest, largest / max(scale, torch.finfo(torch.float64).tiny)


def align(
    reference: nn.Module,
    other: nn.Module,
    method: Method = "weight",
    batches: Sequence[Any] | None = None,
    example_inputs: Tensor | Sequence[Tensor] | None = None,
    seed: int = 0,
    spec: PermutationSpec | None = None,
    max_iter: int = 100,
    fixed: Sequence[str] = (),
) -> AlignResult:
    """Permute the units of ``other`` to match ``reference`` (Git Re-Basin).

    Neither input is changed. The spec is derived by tracing (`permutation_spec`) unless given.
    The aligned copy is checked to compute the same function as ``other`` on the batches (or the
    example inputs), in eval mode.

    Args:
        reference: the model to align to.
        other: the model to permute.
        method: ``"weight"`` (weight matching, data free) or ``"activation"`` (activation
            matching on ``batches``).
        batches: probe batches (tensors or ``(inputs, targets)`` pairs); needed for
            ``"activation"``, and used for the function check.
        example_inputs: inputs for tracing and the check when ``batches`` is None.
        seed: seed of weight matching's visiting order.
        spec: a permutation spec to use instead of tracing.
        max_iter: most sweeps of weight matching.
        fixed: module names held fixed when tracing (see `permutation_spec`).

    Returns:
        The aligned copy, the permutations and the function check.

    Raises:
        ConfigError: for an unknown method, different architectures, missing inputs, or when the
            aligned copy's outputs differ from ``other``'s by more than 1e-4 relative.
    """
    require(method in _METHODS, "method", method, f"one of {list(_METHODS)}")
    check_same_architecture(reference, other)
    if method == "activation" and not batches:
        raise ConfigError("batches: got none; method='activation' needs probe batches")
    example = first_inputs(batches, example_inputs)
    if spec is None:
        spec = permutation_spec(reference, example, fixed=fixed)
    check_spec(spec, other)
    objective: list[float] = []
    if method == "weight":
        result = weight_matching(
            spec, reference.state_dict(), other.state_dict(), max_iter=max_iter, seed=seed
        )
        perms, objective = result.perms, result.objective
    else:
        perms = activation_matching(spec, reference, other, batches).perms
    module = copy.deepcopy(other)
    module.load_state_dict(apply_permutation(spec, perms, other.state_dict()))
    checks = list(iterate_inputs(batches)) if batches else [example]
    largest, relative = output_difference(other, module, checks)
    if relative > _TOLERANCE:
        raise ConfigError(
            f"align: the aligned copy computes a different function (max output difference "
            f"{largest:.3g}, {relative:.3g} relative > {_TOLERANCE}); the permutation spec does "
            "not fit this model"
        )
    return AlignResult(
        module=module,
        perms=perms,
        spec=spec,
        max_output_diff=largest,
        relative_output_diff=relative,
        method=method,
        objective=objective,
    )
