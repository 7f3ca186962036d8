"""A checkpoint callback that keeps ``last.ckpt`` at the newest weights."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Lightning's `ModelCheckpoint` writing ``<dirpath>/last.ckpt`` at every check.

    ``ModelCheckpoint(save_last=True)`` rewrites ``last.ckpt`` only when it saves a top-k
    checkpoint (Lightning 2.6), so beside a monitored best checkpoint it goes stale as soon as
    the metric stops improving, and ``resume=`` or ``lsuite-probe --ckpt last`` would take older
    weights. This one has no metric and one file, replaced at every check (every epoch, or every
    N epochs or optimizer steps). Its class name gives it its own ``state_key``, so it can sit
    beside other unmonitored checkpoint callbacks (``callbacks=[default,trajectory]``).

    Args:
        dirpath: directory of ``last.ckpt``.
        every_n_epochs: check every N epochs (None: every epoch unless ``every_n_train_steps``).
        every_n_train_steps: check every N optimizer steps instead.
    """

    def __init__(
        self,
        dirpath: str | Path,
        every_n_epochs: int | None = None,
        every_n_train_steps: int | None = None,
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            save_last=False,
            enable_version_counter=False,  # a re-run in the same directory overwrites it
            every_n_epochs=every_n_epochs,
            every_n_train_steps=every_n_train_steps,
        )


__all__ = ["LastCheckpoint"]
