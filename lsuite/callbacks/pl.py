"""lsuite's callbacks for projects built on the standalone ``pytorch_lightning`` package.

``lightning.pytorch`` and ``pytorch_lightning`` are two copies of Lightning with separate class
hierarchies. The classes here subclass both ``Callback`` classes, so a ``pytorch_lightning``
Trainer, and its LightningCLI (which checks ``trainer.callbacks`` entries against
``pytorch_lightning.Callback``), take them:

    from lsuite.callbacks.pl import ProbeCallback
    trainer = pytorch_lightning.Trainer(callbacks=[ProbeCallback(HessianTrace())])
"""

from __future__ import annotations

try:
    import pytorch_lightning
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lsuite.callbacks.pl is for projects on the standalone pytorch_lightning package, which "
        "is not installed; projects on `lightning` use lsuite.callbacks.ProbeCallback"
    ) from error

from lsuite.callbacks.divergence import DivergenceCheck as _DivergenceCheck
from lsuite.callbacks.probe_callback import ProbeCallback as _ProbeCallback


class ProbeCallback(_ProbeCallback, pytorch_lightning.Callback):
    """`lsuite.callbacks.ProbeCallback` for a ``pytorch_lightning`` Trainer; same arguments."""


class DivergenceCheck(_DivergenceCheck, pytorch_lightning.Callback):
    """`lsuite.callbacks.divergence.DivergenceCheck` for a ``pytorch_lightning`` Trainer."""


__all__ = ["DivergenceCheck", "ProbeCallback"]
