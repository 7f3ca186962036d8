"""A test-only callback that makes a job fail when training starts, to test sweeps with failures."""

from lightning.pytorch import Callback


class RaiseOnFitStart(Callback):
    """Raise ``RuntimeError("planted failure")`` at the start of fit when ``enabled``."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.enabled:
            raise RuntimeError("planted failure")
