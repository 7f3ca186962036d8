"""Lightning callbacks that schedule probes during training."""

from lsuite.callbacks.probe_callback import ProbeCallback

__all__ = ["ProbeCallback"]
