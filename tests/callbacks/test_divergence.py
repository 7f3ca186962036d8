"""DivergenceCheck: stops at the first non-finite loss, on every rank, with a clear error."""

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from poisoned import ManualModule, PoisonedModule
from probe_fixtures import TinyData, tiny_module

from lsuite.callbacks.divergence import DivergenceCheck, TrainingDiverged


def make_trainer(tmp_path, **kwargs):
    return Trainer(
        accelerator="cpu",
        max_epochs=kwargs.pop("max_epochs", 2),
        default_root_dir=tmp_path,
        callbacks=[DivergenceCheck()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def test_finite_training_is_not_stopped(tmp_path):
    seed_everything(0)
    trainer = make_trainer(tmp_path)
    trainer.fit(tiny_module(), datamodule=TinyData())
    assert trainer.global_step == 12


def test_nan_loss_stops_at_that_step(tmp_path):
    trainer = make_trainer(tmp_path)
    with pytest.raises(
        TrainingDiverged, match=r"training_step's loss is nan at global step 4 "
    ) as info:
        trainer.fit(PoisonedModule(), datamodule=TinyData())
    assert info.value.step == 4  # the poisoned step (global step 3) has been taken
    assert torch.isnan(torch.tensor(info.value.value))
    assert "lower the learning rate" in str(info.value)


def test_infinite_learning_rate_diverges(tmp_path):
    seed_everything(0)
    trainer = make_trainer(tmp_path)
    with pytest.raises(TrainingDiverged, match="training diverged"):
        trainer.fit(tiny_module(lr=float("inf")), datamodule=TinyData())
    assert trainer.global_step <= 3


def test_manual_optimisation_checks_the_logged_metric(tmp_path):
    trainer = make_trainer(tmp_path)
    with pytest.raises(TrainingDiverged, match=r"train/loss is nan"):
        trainer.fit(ManualModule(), datamodule=TinyData())


@pytest.mark.ddp
def test_nan_on_one_rank_stops_every_rank(tmp_path):
    """Rank 1 alone sees NaN; both ranks must stop at the same step (a hang would fail)."""
    trainer = make_trainer(tmp_path, strategy="ddp_spawn", devices=2)
    with pytest.raises(Exception, match=r"training diverged"):
        trainer.fit(PoisonedModule(poison_rank=1), datamodule=TinyData())
