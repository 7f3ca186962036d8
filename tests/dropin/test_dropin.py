"""Probes added to an existing Lightning project (tests/dropin/project) without editing it."""

import copy
import importlib
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from torch import nn
from torch.func import functional_call

from lsuite.callbacks import ProbeCallback
from lsuite.probes.hessian_eigenvalues import HessianEigenvalues
from lsuite.probes.hessian_trace import HessianTrace
from lsuite.results.jsonl import read_records

DROPIN = Path(__file__).resolve().parent
PROJECT_CONFIG = DROPIN / "project" / "config.yaml"
LSUITE_CONFIG = DROPIN / "lsuite.yaml"
SMOOTHING = 0.1


@pytest.fixture
def project(monkeypatch):
    """The project's modules, importable as a user's would be (``project.model``...)."""
    monkeypatch.syspath_prepend(str(DROPIN))
    monkeypatch.setattr("sys.argv", ["main.py"])  # LightningCLI reads args= only
    return {
        name: importlib.import_module(f"project.{name}") for name in ("model", "data", "main")
    } | {"adapters": importlib.import_module("probe_adapters")}


def exact_top_eigenvalue(model, features, labels):
    """Top eigenvalue of the Hessian of the smoothed cross-entropy over all samples (eval mode)."""
    net = copy.deepcopy(model.net).double().eval()
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    flat = torch.cat([p.detach().flatten() for _, p in net.named_parameters()])
    buffers = dict(net.named_buffers())
    loss_fn = nn.CrossEntropyLoss(label_smoothing=SMOOTHING)

    def loss(theta):
        params, offset = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            params[name] = theta[offset : offset + shape.numel()].view(shape)
            offset += shape.numel()
        return loss_fn(functional_call(net, {**buffers, **params}, (features.double(),)), labels)

    return torch.linalg.eigvalsh(torch.func.hessian(loss)(flat))[-1].item()


def fit_in_python(project, root, probes):
    seed_everything(7)
    model = project["model"].SignalNet()
    data = project["data"].SignalData()
    callbacks = []
    if probes:
        callbacks = [
            ProbeCallback(
                HessianEigenvalues(k=1, tol=1e-8),
                every_n_epochs=1,
                num_batches=2,
                batch_size=96,  # the whole training set
                loss_fn=nn.CrossEntropyLoss(label_smoothing=SMOOTHING),
                batch_adapter=project["adapters"].features_label,
            ),
            ProbeCallback(
                HessianTrace(num_matvecs=8, rel_stderr=None),
                every_n_train_steps=4,
                on_fit_end=False,
                batch_adapter="probe_adapters.features_label",
            ),
        ]
    trainer = Trainer(
        max_epochs=3,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=callbacks,
    )
    trainer.fit(model, datamodule=data)
    return model, data


def fit_with_cli(project, root, probes):
    configs = ["--config", str(PROJECT_CONFIG)]
    if probes:
        configs += ["--config", str(LSUITE_CONFIG)]
    cli = project["main"].cli_main(["fit", *configs, f"--trainer.default_root_dir={root}"])
    return cli.model, cli.datamodule


def assert_same_weights(a, b):
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def check_records(root, model, data):
    eigs = read_records(root / "probes" / "hessian_eigenvalues.jsonl")
    assert [r["meta"]["step"] for r in eigs] == [6, 12, 18]  # 6 steps per epoch; fit end = last
    exact = exact_top_eigenvalue(model, data.train_set.features, data.train_set.label)
    assert eigs[-1]["result"]["eigenvalues"][0] == pytest.approx(exact, rel=1e-3)
    traces = read_records(root / "probes" / "hessian_trace.jsonl")
    assert [r["meta"]["step"] for r in traces] == [4, 8, 12, 16]
    assert all(r["result"]["trace"] > 0 for r in traces)


@pytest.mark.parametrize("runner", [fit_in_python, fit_with_cli], ids=["python", "lightning_cli"])
def test_probes_record_and_leave_training_unchanged(runner, project, tmp_path):
    with_probes, data = runner(project, tmp_path / "probes", probes=True)
    without_probes, _ = runner(project, tmp_path / "plain", probes=False)
    check_records(tmp_path / "probes", with_probes, data)
    assert_same_weights(with_probes, without_probes)
    assert not (tmp_path / "plain" / "probes").exists()


def test_cli_config_keeps_the_project_callbacks(project, tmp_path):
    args = ["fit", "--config", str(PROJECT_CONFIG), "--config", str(LSUITE_CONFIG)]
    cli = project["main"].cli_main(
        [*args, "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}"]
    )
    names = [type(c).__name__ for c in cli.trainer.callbacks]
    assert "EarlyStopping" in names  # from the project's config.yaml
    assert names.count("ProbeCallback") == 2  # appended by lsuite.yaml's callbacks+
    probe = next(c for c in cli.trainer.callbacks if isinstance(c, ProbeCallback))
    assert isinstance(probe.loss_fn, nn.CrossEntropyLoss)
    assert probe.loss_fn.label_smoothing == SMOOTHING
