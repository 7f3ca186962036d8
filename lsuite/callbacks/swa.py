"""Lightning's stochastic weight averaging, kept from moving the weights in its BatchNorm epoch."""

from __future__ import annotations

import math

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import StochasticWeightAveraging as _LightningSWA
from typing_extensions import override

try:
    from lightning.pytorch.callbacks import WeightAveraging

    _WEIGHT_AVERAGING: tuple[type, ...] = (WeightAveraging,)
except ImportError:  # added in Lightning 2.6
    _WEIGHT_AVERAGING = ()


class StochasticWeightAveraging(_LightningSWA):
    """Average the weights over the last epochs (Lightning's callback, one defect fixed).

    Same arguments and behaviour as ``lightning.pytorch.callbacks.StochasticWeightAveraging``:
    from epoch ``swa_start`` to ``swa_end`` (the last) it averages the weights at the start of
    each epoch and anneals the learning rate to ``swa_lrs``; the average replaces the weights
    at the end of training. A model with BatchNorm gets one extra epoch that loads the average
    and recomputes the running statistics by forward passes only. Izmailov et al. (2018),
    "Averaging Weights Leads to Wider Optima and Better Generalization".

    The fix: in that extra epoch Lightning (2.6) skips backward but still calls
    ``optimizer.step`` on the last batch, with the gradients of the last training step still in
    place, so the final weights are one learning-rate step away from the average. Here the
    gradients are set to None when the epoch starts; optimizers (SGD, Adam, SAM...) skip
    parameters without a gradient, so the average is kept exactly.
    """

    @override
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Average or load the average as Lightning does; clear gradients in the BatchNorm epoch.

        Args:
            trainer: the trainer.
            pl_module: the module being trained.
        """
        super().on_train_epoch_start(trainer, pl_module)
        batch_norm_epoch = (
            self._model_contains_batch_norm
            and self._max_epochs != -1
            and trainer.current_epoch == self.swa_end + 1
        )
        if batch_norm_epoch:
            for optimizer in trainer.optimizers:
                optimizer.zero_grad(set_to_none=True)


def holds_average(callback: Callback, trainer: Trainer, *, fit_ended: bool) -> bool:
    """Say whether ``callback`` has put averaged weights into the module that ``trainer`` fits.

    Args:
        callback: any callback; only Lightning's weight-averaging callbacks can answer True.
        trainer: the trainer.
        fit_ended: whether fitting has ended (``on_fit_end``): ``WeightAveraging`` and
            ``StochasticWeightAveraging`` with ``max_epochs=-1`` load the average only then.

    Returns:
        True when the module's weights are the average of at least one averaging point.
    """
    if isinstance(callback, _LightningSWA):
        if callback.n_averaged is None or int(callback.n_averaged) == 0:
            return False
        end = callback.swa_end
        # The average is loaded after the last SWA epoch: at train end, or when the extra
        # BatchNorm epoch starts; training stopped earlier keeps the current weights.
        return fit_ended if math.isinf(end) else trainer.current_epoch > end
    if isinstance(callback, _WEIGHT_AVERAGING):
        # Lightning keeps the AveragedModel private; it is copied in when training ends.
        average = getattr(callback, "_average_model", None)
        return fit_ended and average is not None and int(average.n_averaged) > 0
    return False


__all__ = ["StochasticWeightAveraging", "holds_average"]
