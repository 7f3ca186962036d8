"""ProbeCallback hardening (issue 10): per-run records, on_error, setup checks, the dry run,
forward_fn, probe_network, probe_dtype under bf16-mixed, and fit-end epoch labels."""

import os
from functools import partial

import pytest
import torch
from failing_probe import FailingProbe
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.loggers import CSVLogger
from probe_fixtures import LossProbe, TinyData, tiny_module

from lsuite.callbacks.probe_batches import local_batches
from lsuite.callbacks.probe_callback import ProbeCallback
from lsuite.errors import ConfigError
from lsuite.model.classifier import Classifier
from lsuite.probes.hessian_trace import HessianTrace
from lsuite.probes.interpolation import Interpolation
from lsuite.results import jsonl
from lsuite.session import Outputs, measure_module


def trainer(root, callbacks, max_epochs=2, logger=False, **kwargs):
    return Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        default_root_dir=root,
        callbacks=callbacks,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def fit(root, callbacks, module=None, **kwargs):
    seed_everything(0, workers=True)
    module = module if module is not None else tiny_module()
    t = trainer(root, callbacks, **kwargs)
    t.fit(module, datamodule=TinyData())
    return t, module


def test_two_fresh_runs_in_one_root_write_their_own_records(tmp_path):
    """Item 5: records go to the logger's run directory, version_N/probes/."""
    for version in (0, 1):
        callback = ProbeCallback(LossProbe("lp"), every_n_epochs=1)
        fit(tmp_path, [callback], logger=CSVLogger(tmp_path))
        run = tmp_path / "lightning_logs" / f"version_{version}"
        assert callback.records_path == run / "probes" / "lp.jsonl"
        assert [r["meta"]["step"] for r in jsonl.read_records(callback.records_path)] == [6, 12]
        header = (run / "metrics.csv").read_text().splitlines()[0]
        assert "probe/lp/loss" in header
    assert not (tmp_path / "probes").exists()


def test_output_dir_wins_and_no_logger_uses_default_root(tmp_path):
    callback = ProbeCallback(LossProbe("lp"), output_dir=str(tmp_path / "mine"))
    fit(tmp_path, [callback], logger=CSVLogger(tmp_path))
    assert len(jsonl.read_records(tmp_path / "mine" / "probes" / "lp.jsonl")) == 1
    callback = ProbeCallback(LossProbe("plain"))
    fit(tmp_path / "b", [callback])
    assert len(jsonl.read_records(tmp_path / "b" / "probes" / "plain.jsonl")) == 1


def test_warn_leaves_a_failure_record_and_a_finished_run(tmp_path):
    callback = ProbeCallback(FailingProbe(name="bad"), every_n_epochs=1, on_error="warn")
    t, _ = fit(tmp_path, [callback], logger=CSVLogger(tmp_path, name="csv", version=""))
    assert t.current_epoch == 2  # training went on
    raws = jsonl.read_records(tmp_path / "csv" / "probes" / "bad.jsonl")
    assert [r["meta"]["step"] for r in raws] == [6, 12]
    assert all(r["result"] is None and "planted" in r["error"]["message"] for r in raws)
    assert "probe/bad/failed" in (tmp_path / "csv" / "metrics.csv").read_text()


def test_raise_fails_the_run_naming_the_probe(tmp_path):
    callback = ProbeCallback(FailingProbe(name="bad"), every_n_epochs=1, on_error="raise")
    with pytest.raises(RuntimeError, match="probe bad failed"):
        fit(tmp_path, [callback])


def test_a_schedule_that_never_fires_is_an_error_at_setup(tmp_path):
    callback = ProbeCallback(LossProbe("never"), every_n_epochs=50, on_fit_end=False)
    with pytest.raises(ConfigError, match=r"never.every_n_epochs: got 50; .*max_epochs=2"):
        fit(tmp_path, [callback])


@pytest.mark.parametrize(
    ("start", "match"),
    [
        ("epoch:100", "epoch 100 is never reached"),
        ("step:1000", "step 1000 is never reached"),
    ],
)
def test_unreachable_points_fail_at_setup(tmp_path, start, match):
    callback = ProbeCallback(Interpolation(num_points=3, start=start), on_fit_end=True)
    with pytest.raises(ConfigError, match=match):
        fit(tmp_path, [callback], max_steps=12)


class StepsSeen(LossProbe):
    pass


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"loss_fn": "torch.nn.functional.mse_loss"},
            r"probe lp: loss_fn=torch.nn.functional.mse_loss does not fit the model: "
            r"outputs \(16, 3\) float32, targets \(16,\) int64",
        ),
        ({"batch_adapter": "os.path.basename"}, r"probe lp: batch_adapter=posixpath.basename"),
        ({"forward_fn": "net.3"}, r"probe lp: forward_fn=.* fails on inputs \(16, 6\)"),
    ],
)
def test_the_dry_run_fails_before_the_first_step(tmp_path, kwargs, match):
    callback = ProbeCallback(LossProbe("lp"), every_n_epochs=1, **kwargs)
    module = tiny_module()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(ConfigError, match=match):
        fit(tmp_path, [callback], module=module)
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no training step was taken


class NoForward(LightningModule):
    """Like Lightning's examples/pytorch/basics/transformer.py: no forward, calls self.model."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_forward_fn_names_a_submodule_of_a_module_without_forward(tmp_path):
    callback = ProbeCallback(LossProbe("lp"), forward_fn="model")
    _, module = fit(tmp_path, [callback], module=NoForward())
    [raw] = jsonl.read_records(tmp_path / "probes" / "lp.jsonl")
    x, y = next(iter(TinyData().train_dataloader()))
    assert raw["result"]["loss"] > 0
    with pytest.raises(ConfigError, match="forward"):
        fit(tmp_path / "b", [ProbeCallback(LossProbe("lp"))], module=NoForward())
    del x, y, module


class Wrapper(Classifier):
    """Tells the probes to measure ``self.net`` rather than the LightningModule."""

    def probe_network(self):
        self.seen.append(True)
        return self.net


def test_probe_network_is_what_gets_measured(tmp_path):
    callback = ProbeCallback(LossProbe("lp"))
    module = Wrapper(tiny_module().net, optimizer=partial(torch.optim.SGD, lr=0.1), num_classes=3)
    module.seen = []
    _, module = fit(tmp_path, [callback], module=module)
    assert module.seen
    assert jsonl.read_records(tmp_path / "probes" / "lp.jsonl")[0]["result"]["loss"] > 0


@pytest.mark.slow
def test_bf16_mixed_fit_end_trace_equals_the_float32_measurement(tmp_path):
    """Item 4 (issue 11): probes compute in float32 outside autocast in a bf16-mixed run."""
    probe = HessianTrace(num_matvecs=8, rel_stderr=None)
    callback = ProbeCallback(probe, on_fit_end=True, num_batches=2, probe_dtype="float32")
    t, module = fit(tmp_path, [callback], precision="bf16-mixed")
    [raw] = jsonl.read_records(tmp_path / "probes" / "hessian_trace.jsonl")
    batches = local_batches(callback._batches["train"], callback.batch_adapter, module, 0, 1)
    reference = measure_module(
        HessianTrace(num_matvecs=8, rel_stderr=None),
        module.float(),
        {"train": batches},
        loss_fn=torch.nn.functional.cross_entropy,
        meta={"probe": "reference", "step": t.global_step},
        seed=0,
        outputs=Outputs(directory=tmp_path / "reference", plots=False),
    )
    assert raw["result"]["trace"] == pytest.approx(reference.trace, rel=1e-6)


def test_fit_end_record_says_the_epoch_of_the_last_epoch_end(tmp_path):
    """Item 8: the SWA-free fit-end record at a new step keeps Lightning's epoch; at the same
    step as an epoch end it says that epoch (not max_epochs)."""
    callback = ProbeCallback(LossProbe("lp"), every_n_train_steps=5, on_fit_end=True)
    fit(tmp_path, [callback])
    raws = jsonl.read_records(tmp_path / "probes" / "lp.jsonl")
    [fit_end] = [r["meta"] for r in raws if r["meta"]["when"] == "fit_end"]
    assert (fit_end["step"], fit_end["epoch"]) == (12, 1)


def test_check_probes_is_on():
    assert os.environ["LSUITE_CHECK_PROBES"] == "1"
