"""lsuite: train networks with Lightning and Hydra, and measure their loss landscapes with probes.

Public names are loaded on first use, so ``import lsuite.probes...`` does not import Lightning.
``lsuite.align`` is the alignment package (``lsuite.align.align(reference, other)``, see
`lsuite.align`); its two main functions are also ``lsuite.permutation_spec`` and
``lsuite.weight_matching``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ConfigError": "lsuite.errors",
    "ModelPoint": "lsuite.probes.point",
    "snapshot": "lsuite.probes.point",
    "DataSource": "lsuite.probes.data_source",
    "Probe": "lsuite.probes.base",
    "ProbeResult": "lsuite.probes.base",
    "HessianOperator": "lsuite.probes.hessian_operator",
    "hessian_eigenpairs": "lsuite.linalg.operator_eigenpairs",
    "HessianTrace": "lsuite.probes.hessian_trace",
    "HessianEigenvalues": "lsuite.probes.hessian_eigenvalues",
    "HessianSpectrum": "lsuite.probes.hessian_spectrum",
    "Interpolation": "lsuite.probes.interpolation",
    "Curve": "lsuite.probes.curve",
    "Sharpness": "lsuite.probes.sharpness",
    "GeneralizationMeasures": "lsuite.probes.generalization",
    "Line": "lsuite.probes.line",
    "Plane": "lsuite.probes.plane",
    "Ensemble": "lsuite.probes.ensemble",
    "ProbeCallback": "lsuite.callbacks.probe_callback",
    "DivergenceCheck": "lsuite.callbacks.divergence",
    "StochasticWeightAveraging": "lsuite.callbacks.swa",
    "Classifier": "lsuite.model.classifier",
    "CurveModule": "lsuite.model.curve",
    "SimplexModule": "lsuite.model.simplex",
    "Subspace": "lsuite.model.subspace",
    "RandomSubspace": "lsuite.model.random_subspace",
    "RandomProjection": "lsuite.functional.random_projection",
    "SAM": "lsuite.optim.sam",
    "EntropySGD": "lsuite.optim.entropy_sgd",
    "permutation_spec": "lsuite.align",
    "weight_matching": "lsuite.align",
}
# subpackages exported as themselves (importing one binds it on `lsuite` under its own name)
_MODULES = {"align": "lsuite.align"}

__all__ = sorted([*_EXPORTS, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lsuite' has no attribute {name!r}")
