"""Probe outputs in wandb (offline): curve records become tables with line plots, plus images."""

import pytest
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import WandbLogger
from probe_fixtures import TinyData, tiny_module

from lsuite.callbacks.probe_callback import ProbeCallback
from lsuite.probes.interpolation import Interpolation


@pytest.mark.slow
def test_interpolation_is_logged_as_a_table_and_an_image(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    seed_everything(0)
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="lsuite-test")
    probe = ProbeCallback(Interpolation(num_points=3), data=["train", "val"], num_batches=1)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        default_root_dir=tmp_path,
        callbacks=[probe],
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(tiny_module(), datamodule=TinyData())
    logger.experiment.finish()
    [run] = (tmp_path / "wandb").glob("offline-run-*")
    tables = list(run.glob("files/media/table/probe/interpolation/curve_table_*.table.json"))
    images = list(run.glob("files/media/images/probe/interpolation/plot_*.png"))
    assert len(tables) == 1
    assert len(images) == 1
