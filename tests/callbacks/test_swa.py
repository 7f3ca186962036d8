"""SWA: the average, BatchNorm statistics, SAM, probe labels, bad settings."""

import copy
from functools import partial

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import StochasticWeightAveraging as LightningSWA
from lightning.pytorch.callbacks import WeightAveraging
from omegaconf import OmegaConf, open_dict
from probe_fixtures import LossProbe
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lsuite.callbacks.probe_callback import ProbeCallback
from lsuite.callbacks.swa import StochasticWeightAveraging
from lsuite.config.paths import config_dir
from lsuite.config.validate import validate
from lsuite.errors import ConfigError
from lsuite.model.classifier import Classifier
from lsuite.optim.sam import SAM
from lsuite.results.jsonl import read_records

MAX_EPOCHS = 4


class EpochStartWeights(Callback):
    """Record the parameters at the start of every epoch, before anything moves them."""

    def __init__(self):
        self.weights = {}

    def on_train_epoch_start(self, trainer, pl_module):
        self.weights.setdefault(
            trainer.current_epoch, [p.detach().clone() for p in pl_module.net.parameters()]
        )


def make_net(bn):
    torch.manual_seed(0)
    if bn:
        return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def make_loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)


def fit_swa(tmp_path, bn, swa_class=StochasticWeightAveraging, optimizer=None, **trainer_kwargs):
    optimizer = optimizer or partial(torch.optim.SGD, lr=0.1, momentum=0.9)
    module = Classifier(make_net(bn), optimizer=optimizer, num_classes=3)
    swa = swa_class(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=1)
    recorder = EpochStartWeights()
    probe = ProbeCallback(LossProbe("fit_end_loss"), on_fit_end=True)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=MAX_EPOCHS,
        callbacks=[swa, recorder, probe],
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_kwargs,
    )
    loader = make_loader()
    trainer.fit(module, train_dataloaders=loader)
    return module.net, swa, recorder, read_records(tmp_path / "probes" / "fit_end_loss.jsonl")


def expected_average(swa, recorder):
    """The mean of the weights at the starts of epochs swa_start .. swa_end."""
    epochs = range(swa.swa_start, swa.swa_end + 1)
    assert len(epochs) == int(swa.n_averaged) >= 2
    stacks = zip(*(recorder.weights[e] for e in epochs), strict=True)
    return [torch.stack(s).mean(0) for s in stacks]


def recomputed_batchnorm(net, average):
    """BatchNorm statistics of the averaged weights: a cumulative mean over the train batches."""
    net = copy.deepcopy(net).train()
    with torch.no_grad():
        for p, a in zip(net.parameters(), average, strict=True):
            p.copy_(a)
    for layer in net.modules():
        if isinstance(layer, nn.BatchNorm1d):
            layer.reset_running_stats()
            layer.momentum = None
    with torch.no_grad():
        for x, _ in make_loader():
            net(x)
    return net


def assert_weights(net, average):
    for p, a in zip(net.parameters(), average, strict=True):
        torch.testing.assert_close(p.detach(), a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bn", [False, True], ids=["no_bn", "batchnorm"])
def test_swa_weights_are_the_average_and_probes_say_so(tmp_path, bn):
    net, swa, recorder, records = fit_swa(tmp_path, bn)
    average = expected_average(swa, recorder)
    assert_weights(net, average)
    if bn:
        reference = recomputed_batchnorm(net, average)
        for name, buffer in net[1].named_buffers():
            torch.testing.assert_close(buffer, getattr(reference[1], name), msg=name)
    assert [r["meta"]["weights"] for r in records] == ["swa_average"]


def test_lightning_swa_moves_off_the_average_in_its_batchnorm_epoch(tmp_path):
    """Why lsuite subclasses Lightning's SWA: with BatchNorm, its extra epoch steps once with the
    last gradients. When this fails, Lightning has fixed it and the subclass can go."""
    net, swa, recorder, _ = fit_swa(tmp_path, bn=True, swa_class=LightningSWA)
    average = expected_average(swa, recorder)
    distance = max(
        (p.detach() - a).abs().max() for p, a in zip(net.parameters(), average, strict=True)
    )
    assert distance > 1e-4


def test_sam_with_swa_averages_sam_iterates(tmp_path):
    """SWA's learning-rate schedule acts on SAM's (shared) base groups; the average is exact."""
    optimizer = partial(SAM, base_optimizer=partial(torch.optim.SGD, lr=0.1), rho=0.1)
    net, swa, recorder, records = fit_swa(tmp_path, bn=True, optimizer=optimizer)
    assert_weights(net, expected_average(swa, recorder))
    assert [r["meta"]["weights"] for r in records] == ["swa_average"]


def test_probe_says_current_when_training_stops_before_the_average_is_loaded(tmp_path):
    # 3 steps per epoch: max_steps=4 stops in epoch 1, after SWA averaged once (at its start)
    # but long before the last SWA epoch, so the weights stay the current ones.
    net, swa, recorder, records = fit_swa(tmp_path, bn=False, max_steps=4)
    assert int(swa.n_averaged) == 1
    assert not torch.equal(next(net.parameters()).detach(), recorder.weights[1][0])
    assert [r["meta"]["weights"] for r in records] == ["current"]


def test_probe_label_with_lightning_weight_averaging(tmp_path):
    """Lightning's WeightAveraging loads its average (here, of every step) when training ends."""
    module = Classifier(
        make_net(bn=False), optimizer=partial(torch.optim.SGD, lr=0.1), num_classes=3
    )
    probe = ProbeCallback(LossProbe("fit_end_loss"), on_fit_end=True)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        callbacks=[WeightAveraging(), probe],
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=make_loader())
    records = read_records(tmp_path / "probes" / "fit_end_loss.jsonl")
    assert [r["meta"]["weights"] for r in records] == ["swa_average"]


def compose_train(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.mark.parametrize("optim", ["sgd", "sam"])
def test_swa_config_validates_with_one_optimizer(optim):
    cfg = compose_train(["callbacks=swa", f"optim={optim}"])
    validate(cfg)
    assert {"model_checkpoint", "lr_monitor", "progress_bar", "swa"} <= set(cfg.callbacks)


@pytest.mark.parametrize("swa_lrs", ["0.0", "-0.1", "[0.05,0.0]", "1"], ids=str)
def test_bad_swa_lrs_fail_naming_the_key(swa_lrs):
    cfg = compose_train(["callbacks=swa", f"callbacks.swa.swa_lrs={swa_lrs}"])
    with pytest.raises(ConfigError, match=r"^callbacks\.swa\.swa_lrs: got"):
        validate(cfg)


def test_swa_with_two_optimizers_fails_naming_the_key():
    cfg = compose_train(["callbacks=swa"])
    sgd = OmegaConf.to_container(cfg.optim)
    with open_dict(cfg):
        cfg.optim = {"encoder": sgd, "head": sgd}
    with pytest.raises(ConfigError, match=r"^callbacks\.swa: got 2 optimizers under optim"):
        validate(cfg)


def test_flat_minima_sweep_jobs_validate_and_probe_at_fit_end_only():
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        base = compose("train", overrides=["experiment=flat_minima"], return_hydra_config=True)
        sweep = base.hydra.sweeper.params
        assert dict(sweep) == {"optim": "sgd,sam", "callbacks": "default,swa"}
        for optim in sweep.optim.split(","):
            for callbacks in sweep.callbacks.split(","):
                overrides = ["experiment=flat_minima", f"optim={optim}", f"callbacks={callbacks}"]
                cfg = compose("train", overrides=overrides)
                validate(cfg)
                assert ("swa" in cfg.callbacks) == (callbacks == "swa")
                assert cfg.callbacks.model_checkpoint is None
                assert cfg.callbacks.last_checkpoint is None
                assert set(cfg.probes) == {"hessian_trace", "hessian_eigenvalues", "sharpness"}
                for probe in cfg.probes.values():
                    assert probe.every_n_epochs is None and probe.on_fit_end
