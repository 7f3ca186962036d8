"""LightningCLI with a model that has no ``forward``: ``forward_fn: model`` in the YAML."""

import importlib
from pathlib import Path

import pytest
from lightning.pytorch.cli import LightningCLI

from lsuite.callbacks import ProbeCallback
from lsuite.results.jsonl import read_records

DROPIN = Path(__file__).resolve().parent


def test_forward_fn_from_lightning_cli(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(DROPIN))
    monkeypatch.setattr("sys.argv", ["main.py"])
    model = importlib.import_module("project.no_forward")
    data = importlib.import_module("project.data")
    configs = [DROPIN / "project" / "config.yaml", DROPIN / "forward_fn.yaml"]
    args = ["fit", *[a for c in configs for a in ("--config", str(c))]]
    cli = LightningCLI(
        model.NoForwardNet,
        data.SignalData,
        args=[*args, "--trainer.max_epochs=2", f"--trainer.default_root_dir={tmp_path}"],
    )
    [probe] = [c for c in cli.trainer.callbacks if isinstance(c, ProbeCallback)]
    assert probe.forward_fn is not None
    records = read_records(tmp_path / "probes" / "hessian_trace.jsonl")
    assert [r["meta"]["step"] for r in records] == [6, 12]
    assert all(r["result"]["trace"] > 0 for r in records)
    x = next(iter(cli.datamodule.train_dataloader()))["features"]
    with pytest.raises(NotImplementedError, match="forward"):  # the model really has none
        cli.model(x)
