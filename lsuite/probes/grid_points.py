"""Old import path of the families of points; the code lives in `lsuite.evaluate.points`."""

from lsuite.evaluate.points import AffinePoints, SegmentPoints, flat_params, grid_axis

__all__ = ["AffinePoints", "SegmentPoints", "flat_params", "grid_axis"]
