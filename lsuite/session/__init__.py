"""The measurement session: one probe on one module, Trainer-free (callbacks and lsuite-probe)."""

from lsuite.session.measure import ProbeFailed, measure_module, resolve_probe_dtype
from lsuite.session.outputs import Outputs
from lsuite.session.sync import Sync

__all__ = ["Outputs", "ProbeFailed", "Sync", "measure_module", "resolve_probe_dtype"]
