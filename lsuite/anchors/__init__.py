"""Point specs: name points in weight space, keep observed weights, and load them from files.

A probe declares the extra points it needs with ``Probe.point_specs() -> {name: spec | [spec]}``
(e.g. ``{"start": "init"}``) and receives them, resolved, as keyword arguments of ``run``
(``start=Params``). Who calls a probe resolves them:

- ``parse_spec(value, key) -> PointSpec`` checks a spec (``init``, ``epoch:N``, ``step:N``,
  ``middle``, ``current``, ``trajectory``, a file, ``RUN_DIR[:last|best|step:N]``); a missing or
  corrupt file is a `ConfigError` here, at setup.
- ``needs_history(spec)`` says whether the spec names weights seen during training;
  ``check_reachable(spec, max_epochs, max_steps, key)`` rejects ``epoch:100`` on a 2-epoch run.
- ``WeightHistory(specs)`` keeps only the observations those specs name:
  ``observe(params, buffers, step=, epoch=)`` at fit start and each epoch end,
  ``resolve(spec, like)``, ``resolve_point(spec, like, like_buffers)``, ``state_dict()``.
- ``resolve_points(probe.point_specs(), params, buffers, history=history)`` returns the ``run``
  keyword arguments (with ``buffers``, for probes with ``point_buffers``: states holding each
  point's buffers too; ``as_state`` does the same for a module or state dict given directly).
- ``load_point(spec, like_params, like_buffers) -> (params, buffers)`` reads a file or run
  directory (keys matched up to one prefix; a mismatch names the first key, both shapes, the file).
"""

from lsuite.anchors.files import checkpoint_path, load_point, load_state, match_keys
from lsuite.anchors.history import Observation, WeightHistory, as_state, resolve_points
from lsuite.anchors.specs import (
    PointSpec,
    check_reachable,
    needs_history,
    parse_spec,
    parse_specs,
)

__all__ = [
    "Observation",
    "PointSpec",
    "WeightHistory",
    "as_state",
    "check_reachable",
    "checkpoint_path",
    "load_point",
    "load_state",
    "match_keys",
    "needs_history",
    "parse_spec",
    "parse_specs",
    "resolve_points",
]
