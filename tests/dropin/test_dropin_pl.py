"""Probes in a project on the standalone ``pytorch_lightning`` package (lsuite.callbacks.pl)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lsuite.probes.hessian_trace import HessianTrace
from lsuite.results.jsonl import read_records

pl = pytest.importorskip("pytorch_lightning")
from pytorch_lightning.cli import LightningCLI  # noqa: E402

from lsuite.callbacks import ProbeCallback  # noqa: E402
from lsuite.callbacks.pl import DivergenceCheck as PLDivergenceCheck  # noqa: E402
from lsuite.callbacks.pl import ProbeCallback as PLProbeCallback  # noqa: E402


class LegacyNet(pl.LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class LegacyData(pl.LightningDataModule):
    def __init__(self, batch_size: int = 16) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 4, generator=g)
        self.dataset = TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True)


CONFIG = """
seed_everything: 3
trainer:
  max_epochs: 2
  accelerator: cpu
  logger: false
  enable_checkpointing: false
  enable_progress_bar: false
  enable_model_summary: false
"""
PROBES = """
trainer:
  callbacks+:
    - class_path: lsuite.callbacks.pl.ProbeCallback
      init_args:
        probe:
          class_path: lsuite.probes.hessian_trace.HessianTrace
          init_args: {num_matvecs: 4, rel_stderr: null}
        every_n_epochs: 1
    - class_path: lsuite.callbacks.pl.DivergenceCheck
"""


def run_cli(tmp_path, name, extra=None):
    files = [tmp_path / "config.yaml"]
    files[0].write_text(CONFIG)
    if extra:
        files.append(tmp_path / "probes.yaml")
        files[1].write_text(extra)
    args = ["fit"] + [arg for f in files for arg in ("--config", str(f))]
    cli = LightningCLI(
        LegacyNet, LegacyData, args=[*args, f"--trainer.default_root_dir={tmp_path / name}"]
    )
    return cli


def test_pl_cli_takes_lsuite_pl_callbacks_and_training_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["main.py"])
    with_probes = run_cli(tmp_path, "probes", PROBES)
    plain = run_cli(tmp_path, "plain")
    kinds = [type(c) for c in with_probes.trainer.callbacks]
    assert PLProbeCallback in kinds and PLDivergenceCheck in kinds
    records = read_records(tmp_path / "probes" / "probes" / "hessian_trace.jsonl")
    assert [r["meta"]["step"] for r in records] == [4, 8]
    for key, value in with_probes.model.state_dict().items():
        assert torch.equal(value, plain.model.state_dict()[key]), key


def test_pl_trainer_runs_the_pl_probe_callback(tmp_path):
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[PLProbeCallback(HessianTrace(num_matvecs=4), every_n_epochs=1)],
    )
    trainer.fit(LegacyNet(), datamodule=LegacyData())
    assert len(read_records(tmp_path / "probes" / "hessian_trace.jsonl")) == 1


def test_pl_callbacks_are_both_kinds_of_callback():
    import lightning.pytorch as lightning

    callback = PLProbeCallback(HessianTrace(num_matvecs=4))
    assert isinstance(callback, pl.Callback)
    assert isinstance(callback, lightning.Callback)
    assert isinstance(callback, ProbeCallback)
    assert callback.state_key == ProbeCallback(HessianTrace(num_matvecs=4)).state_key
