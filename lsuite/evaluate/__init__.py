"""Evaluate the mean loss and accuracy at many points in weight space (grids, lines, samples).

Modules, one job each: `points` (families of points: affine, segment; grid axes),
`batching` (the loop-or-vmap rule, identical on every rank), `accuracy` (what a hit is),
`loop_evaluator` and `vmap_evaluator` (the two ways through the skeleton), `reduction`
(sample-weighted means over all ranks) and `evaluation` (`evaluate_points`, which ties them
together).
"""

from lsuite.evaluate.accuracy import AccuracyFn, class_targets, resolve_accuracy_fn
from lsuite.evaluate.batching import BATCHINGS, Batching, choose_batching, vmap_friendly
from lsuite.evaluate.evaluation import BuffersFn, evaluate_points
from lsuite.evaluate.points import AffinePoints, Points, SegmentPoints, flat_params, grid_axis
from lsuite.evaluate.reduction import SplitValues

__all__ = [
    "BATCHINGS",
    "AccuracyFn",
    "AffinePoints",
    "Batching",
    "BuffersFn",
    "Points",
    "SegmentPoints",
    "SplitValues",
    "choose_batching",
    "class_targets",
    "evaluate_points",
    "flat_params",
    "grid_axis",
    "resolve_accuracy_fn",
    "vmap_friendly",
]
