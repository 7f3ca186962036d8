"""The training-state guard, re-exported from `lsuite.session.guard` where it now lives."""

from lsuite.session.guard import (
    CHECK_ENV,
    capture_rng,
    fingerprint_differences,
    preserved_training_state,
    restore_rng,
    training_fingerprint,
)

__all__ = [
    "CHECK_ENV",
    "capture_rng",
    "fingerprint_differences",
    "preserved_training_state",
    "restore_rng",
    "training_fingerprint",
]
