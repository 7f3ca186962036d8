"""Old import path of the evaluation of many points; the code lives in `lsuite.evaluate`."""

from lsuite.evaluate.accuracy import AccuracyFn, class_targets, resolve_accuracy_fn
from lsuite.evaluate.batching import (
    BATCHINGS,
    RACE_MIN_POINTS,
    VMAP_CHUNK_BYTES,
    VMAP_MAX_POINT_BYTES,
    VMAP_SURE_BYTES,
    Batching,
    choose_batching,
    vmap_friendly,
)
from lsuite.evaluate.evaluation import BuffersFn, evaluate_points
from lsuite.evaluate.points import Points
from lsuite.evaluate.reduction import SplitValues

__all__ = [
    "BATCHINGS",
    "RACE_MIN_POINTS",
    "VMAP_CHUNK_BYTES",
    "VMAP_MAX_POINT_BYTES",
    "VMAP_SURE_BYTES",
    "AccuracyFn",
    "Batching",
    "BuffersFn",
    "Points",
    "SplitValues",
    "choose_batching",
    "class_targets",
    "evaluate_points",
    "resolve_accuracy_fn",
    "vmap_friendly",
]
