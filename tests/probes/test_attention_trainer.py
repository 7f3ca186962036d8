"""An attention model without ``forward`` gets every Hessian and landscape probe in a Trainer."""

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule, LightningModule, Trainer, seed_everything
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lsuite.callbacks.probe_callback import ProbeCallback
from lsuite.probes.hessian_eigenvalues import HessianEigenvalues
from lsuite.probes.hessian_spectrum import HessianSpectrum
from lsuite.probes.hessian_trace import HessianTrace
from lsuite.probes.interpolation import Interpolation
from lsuite.probes.line import Line
from lsuite.probes.plane import Plane
from lsuite.probes.sharpness import Sharpness
from lsuite.results import jsonl


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(
            d_model=8, nhead=2, dim_feedforward=16, dropout=0.1, batch_first=True
        )
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


class NoForwardModule(LightningModule):
    """As in Lightning's transformer example: ``training_step`` calls ``self.model``."""

    def __init__(self):
        super().__init__()
        self.model = Net()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", F.cross_entropy(self.model(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Tokens(LightningDataModule):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(48, 5, 8, generator=g)
        self.y = torch.randint(0, 3, (48,), generator=g)

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=8, shuffle=True)

    def val_dataloader(self):
        return DataLoader(TensorDataset(self.x[:16], self.y[:16]), batch_size=8)


def test_every_probe_on_an_attention_model_without_forward(tmp_path):
    probes = [
        HessianTrace(num_matvecs=6, rel_stderr=None),
        HessianEigenvalues(k=1, max_iter=8),
        HessianSpectrum(num_runs=1, lanczos_steps=4, num_points=16),
        Sharpness(rho=(0.01,), steps=1, sigma=(0.01,), num_samples=2),
        Interpolation(num_points=3, start="init"),
        Line(directions=("random", "init", "hessian"), num_points=3),
        Plane(num_points=3),
        Plane(directions="trajectory", num_points=3, name="trajectory_plane"),
    ]
    callbacks = [
        ProbeCallback(
            p,
            every_n_epochs=None,
            on_fit_end=True,
            num_batches=2,
            forward_fn="model",
            on_error="raise",
            output_dir=str(tmp_path),
            plots=False,
        )
        for p in probes
    ]
    seed_everything(0)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=3,
        default_root_dir=tmp_path,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(NoForwardModule(), datamodule=Tokens())
    for probe in probes:
        (record,) = jsonl.read_records(tmp_path / "probes" / f"{probe.name}.jsonl")
        assert record.get("error") is None and record["result"], probe.name
