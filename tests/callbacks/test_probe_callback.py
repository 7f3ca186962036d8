"""ProbeCallback: schedule, records, loggers, no side effects, resume, DDP equality."""

import os

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from probe_fixtures import LossProbe, TinyData, tiny_module

from lsuite.callbacks.probe_callback import ProbeCallback
from lsuite.callbacks.training_state import preserved_training_state
from lsuite.errors import ConfigError
from lsuite.results import jsonl


def read_records(path):
    """Return the records of ``path`` flattened to ``{**meta, **result}`` for short asserts."""
    out = []
    for raw in jsonl.read_records(path):
        assert raw["schema"] == 2 and raw.get("error") is None, raw
        out.append({**raw["meta"], **raw["result"]})
    return out


def make_trainer(tmp_path, callbacks, max_epochs=3, **kwargs):
    return Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        default_root_dir=tmp_path,
        callbacks=callbacks,
        logger=kwargs.pop("logger", False),
        enable_checkpointing=kwargs.pop("enable_checkpointing", False),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def fit(tmp_path, callbacks, seed=0, bn=False, lr=None, **kwargs):
    seed_everything(seed, workers=True)
    module = tiny_module(seed, bn=bn, lr=lr)
    make_trainer(tmp_path, callbacks, **kwargs).fit(module, datamodule=TinyData())
    return module


def test_epoch_step_and_fit_end_schedule(tmp_path):
    by_epoch = ProbeCallback(LossProbe("by_epoch"), every_n_epochs=1, on_fit_end=True)
    by_step = ProbeCallback(LossProbe("by_step"), every_n_train_steps=4, on_fit_end=False)
    fit(tmp_path, [by_epoch, by_step])  # 96 samples / 16 = 6 steps per epoch, 18 in all
    epochs = read_records(tmp_path / "probes" / "by_epoch.jsonl")
    # Epoch ends at steps 6, 12, 18; fit end is also step 18, so it is not repeated.
    assert [r["step"] for r in epochs] == [6, 12, 18]
    assert [r["when"] for r in epochs] == ["epoch", "epoch", "epoch"]
    steps = read_records(tmp_path / "probes" / "by_step.jsonl")
    assert [r["step"] for r in steps] == [4, 8, 12, 16]
    record = epochs[0]
    for key in ("probe", "kind", "step", "epoch", "seconds", "loss", "num_samples", "weights"):
        assert key in record
    assert record["num_samples"] == 4 * 16
    assert by_epoch.probe.observed_steps == [0, 6, 12, 18]


def test_fit_end_only_and_val_split(tmp_path):
    callback = ProbeCallback(LossProbe(), data="val", num_batches=2, batch_size=8)
    fit(tmp_path, [callback], max_epochs=2)
    records = read_records(tmp_path / "probes" / "loss_probe.jsonl")
    assert [(r["step"], r["when"]) for r in records] == [(12, "fit_end")]
    assert records[0]["num_samples"] == 16


def test_scalars_go_to_every_logger(tmp_path):
    callback = ProbeCallback(LossProbe("lp"), every_n_epochs=1)
    fit(tmp_path, [callback], max_epochs=2, logger=CSVLogger(tmp_path, name="csv", version=""))
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "probe/lp/loss" in header
    assert "probe/lp/draw" in header


def test_probes_do_not_change_training(tmp_path):
    """A seeded run with probes ends with exactly the same weights as without (dropout + BN)."""
    assert os.environ["LSUITE_CHECK_PROBES"] == "1"  # and every measurement is fingerprinted
    plain = fit(tmp_path / "a", [], bn=True)
    probes = [
        ProbeCallback(LossProbe("a"), every_n_train_steps=1, bn_mode="train"),
        ProbeCallback(LossProbe("b"), every_n_epochs=1, data=["train", "val"]),
    ]
    probed = fit(tmp_path / "b", probes, bn=True)
    for (name, a), (_, b) in zip(
        plain.state_dict().items(), probed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert len(read_records(tmp_path / "b" / "probes" / "a.jsonl")) == 18


def test_guard_detects_a_probe_that_changes_weights():
    module = tiny_module()
    with pytest.raises(RuntimeError, match="changed the training state"):  # noqa: SIM117
        with preserved_training_state(module, check=True):
            with torch.no_grad():
                module.net[0].weight.add_(1.0)


def test_guard_restores_modes_grads_and_rng():
    module = tiny_module()
    module.train()
    module.net[0].weight.grad = torch.ones_like(module.net[0].weight)
    before = torch.get_rng_state()
    with preserved_training_state(module):
        module.eval()
        module.net[0].weight.grad = None
        torch.rand(10)
    assert module.training and module.net[1].training
    assert torch.equal(module.net[0].weight.grad, torch.ones_like(module.net[0].weight))
    assert torch.equal(torch.get_rng_state(), before)


def test_fast_dev_run_skips(tmp_path):
    callback = ProbeCallback(LossProbe(), every_n_train_steps=1)
    fit(tmp_path, [callback], fast_dev_run=2)
    assert not (tmp_path / "probes").exists()


class Crash(Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")


def test_resume_neither_repeats_nor_skips(tmp_path):
    def callbacks(crash):
        probe = ProbeCallback(LossProbe("resume"), every_n_train_steps=3, every_n_epochs=1)
        ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_epochs=1)
        return [probe, ckpt, *([Crash()] if crash else [])]

    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tmp_path, callbacks(crash=True), max_epochs=3, enable_checkpointing=True)
    before = read_records(tmp_path / "probes" / "resume.jsonl")
    assert [r["step"] for r in before] == [3, 6, 9, 12]
    seed_everything(0)
    module = tiny_module()
    trainer = make_trainer(
        tmp_path, callbacks(crash=False), max_epochs=3, enable_checkpointing=True
    )
    trainer.fit(module, datamodule=TinyData(), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    steps = [r["step"] for r in read_records(tmp_path / "probes" / "resume.jsonl")]
    assert steps == [3, 6, 9, 12, 15, 18]


def test_bad_arguments_name_the_key():
    with pytest.raises(ConfigError, match="every_n_epochs: got 0"):
        ProbeCallback(LossProbe(), every_n_epochs=0)
    with pytest.raises(ConfigError, match="data: got 'test'"):
        ProbeCallback(LossProbe(), data="test")
    with pytest.raises(ConfigError, match=r"loss_fn: got 'no\.such\.fn'"):
        ProbeCallback(LossProbe(), loss_fn="no.such.fn")
    with pytest.raises(
        ConfigError, match="num_batches: got 1; expected an int >= the number of processes"
    ):
        fit_ddp_config_error()


def fit_ddp_config_error():
    callback = ProbeCallback(LossProbe(), num_batches=1)

    class FakeTrainer:
        world_size = 2
        default_root_dir = "."
        loggers = ()
        max_epochs = 2
        max_steps = -1

    callback.setup(FakeTrainer(), None, "fit")


@pytest.mark.ddp
def test_two_processes_equal_one(tmp_path):
    """Each rank measures its shard of the same batches; the all-reduced mean equals one process."""
    common = {
        "every_n_train_steps": 1,
        "on_fit_end": False,
        "num_batches": 4,
        "batch_size": 8,
        "seed": 3,
    }
    # Both runs measure at step 1; a zero learning rate keeps the weights equal to compare.
    fit(
        tmp_path / "single",
        [ProbeCallback(LossProbe("q"), **common)],
        max_epochs=1,
        limit_train_batches=1,
        lr=0.0,
    )
    fit(
        tmp_path / "double",
        [ProbeCallback(LossProbe("q"), **common)],
        max_epochs=1,
        limit_train_batches=1,
        strategy="ddp_spawn",
        devices=2,
        lr=0.0,
    )
    a = read_records(tmp_path / "single" / "probes" / "q.jsonl")
    b = read_records(tmp_path / "double" / "probes" / "q.jsonl")
    assert len(a) == len(b) == 1
    assert (a[0]["world_size"], b[0]["world_size"]) == (1, 2)
    assert b[0]["num_samples"] == a[0]["num_samples"] == 32
    assert b[0]["draw"] == a[0]["draw"]
    assert b[0]["loss"] == pytest.approx(a[0]["loss"], rel=1e-6)
