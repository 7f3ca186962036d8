"""Permutation alignment of networks (Git Re-Basin) and repairs at interpolated points (REPAIR).

Layering: imports only torch, torch.fx, scipy, `lsuite.functional` and `lsuite.errors`.
"""

from lsuite.align.activation_matching import (
    ActivationMatchingResult,
    activation_matching,
    activation_statistics,
)
from lsuite.align.align import AlignResult, align, check_same_architecture
from lsuite.align.apply import apply_permutation, identity_perms, invert, random_perms
from lsuite.align.repair import (
    REPAIRS,
    interpolate_state,
    interpolated_state,
    repair_state,
    repair_states,
    reset_batch_norm,
)
from lsuite.align.spec import (
    ActivationRef,
    AxisRef,
    PermutationGroup,
    PermutationSpec,
    check_spec,
)
from lsuite.align.tracing import permutation_spec
from lsuite.align.weight_matching import WeightMatchingResult, weight_matching

__all__ = [
    "REPAIRS",
    "ActivationMatchingResult",
    "ActivationRef",
    "AlignResult",
    "AxisRef",
    "PermutationGroup",
    "PermutationSpec",
    "WeightMatchingResult",
    "activation_matching",
    "activation_statistics",
    "align",
    "apply_permutation",
    "check_same_architecture",
    "check_spec",
    "identity_perms",
    "interpolate_state",
    "interpolated_state",
    "invert",
    "permutation_spec",
    "random_perms",
    "repair_state",
    "repair_states",
    "reset_batch_norm",
    "weight_matching",
]
