"""Optimisation-based measures from a run's training log: steps to reach training losses."""

from __future__ import annotations

import math

from lsuite.report.training_log import Series, epoch_series

LOSS_KEY = "train/loss"
"""The logged training cross-entropy (its per-epoch mean, ``train/loss_epoch``, is read)."""

FIRST, SECOND = 0.1, 0.01
"""The thresholds of Jiang et al. (2020): steps to a cross-entropy of 0.1, then from 0.1 to 0.01."""

STEPS_TO_FIRST = f"optimisation/steps_to_loss_{FIRST}"
STEPS_FIRST_TO_SECOND = f"optimisation/steps_loss_{FIRST}_to_{SECOND}"
MEASURES = (STEPS_TO_FIRST, STEPS_FIRST_TO_SECOND)
"""The measures' names, as the correlation table shows them."""


def steps_to_reach(series: Series, threshold: float) -> float:
    """Return the optimizer steps taken when the series first fell below ``threshold``.

    Lightning logs an epoch's metrics with the index of its last step, so a value logged at
    step ``s`` was reached after ``s + 1`` optimizer steps.

    Args:
        series: ``(step, value)`` pairs, e.g. each epoch's mean training loss.
        threshold: the level; reached when ``value < threshold`` (strictly, as Lightning's
            ``EarlyStopping(stopping_threshold=...)`` stops).

    Returns:
        The number of steps, or NaN when the series never went below ``threshold``.
    """
    for step, value in series:
        if value < threshold:
            return float(step + 1)
    return math.nan


def optimisation_measures(series: dict[str, Series]) -> dict[str, float]:
    """Return the steps to a training loss of 0.1, and the steps from 0.1 to 0.01.

    Measures "#steps to reach cross-entropy 0.1" and "#steps from cross-entropy 0.1 to 0.01"
    of Jiang, Neyshabur, Mobahi, Krishnan, Bengio 2020, "Fantastic Generalization Measures and
    Where to Find Them", read from the per-epoch mean training cross-entropy
    (``train/loss_epoch`` of the CSV log; so in steps, at an epoch's resolution). NaN where the
    loss never went below the threshold (the second is NaN too when the first is), or the run
    has no training log.

    Args:
        series: `lsuite.report.training_log.read_training_log`.

    Returns:
        `STEPS_TO_FIRST` and `STEPS_FIRST_TO_SECOND`.
    """
    loss = epoch_series(series, LOSS_KEY)
    first, second = steps_to_reach(loss, FIRST), steps_to_reach(loss, SECOND)
    return {STEPS_TO_FIRST: first, STEPS_FIRST_TO_SECOND: second - first}
