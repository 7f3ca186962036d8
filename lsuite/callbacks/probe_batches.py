"""Pick a fixed, seeded set of probe batches from a Lightning run's data, apart from training."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from lsuite.errors import ConfigError
from lsuite.probes.data_source import Batch, BatchAdapter

log = logging.getLogger(__name__)


def find_loader(trainer: Trainer, split: str) -> DataLoader:
    """Return the data loader of ``split`` (``"train"`` or ``"val"``) of a running or set-up fit.

    Args:
        trainer: the trainer.
        split: ``"train"`` or ``"val"``.

    Returns:
        The first loader of the split.

    Raises:
        ConfigError: when the run has no loader for the split.
    """
    loaders: Any = trainer.train_dataloader if split == "train" else trainer.val_dataloaders
    if loaders is None and trainer.datamodule is not None:
        source = trainer.datamodule
        loaders = source.train_dataloader() if split == "train" else source.val_dataloader()
    if isinstance(loaders, dict):
        loaders = next(iter(loaders.values()), None)
    if isinstance(loaders, Sequence) and not isinstance(loaders, DataLoader):
        loaders = loaders[0] if loaders else None
    if loaders is None:
        raise ConfigError(f"data: got {split!r}, but the run has no {split} data loader")
    return loaders


def sample_batches(
    loader: DataLoader, *, num_batches: int, batch_size: int | None, seed: int
) -> list[Any]:
    """Draw ``num_batches`` batches of ``batch_size`` samples by a generator seeded with ``seed``.

    Map-style datasets are indexed directly (no augmentation that lives in the training loop, no
    distributed sampler), so every rank and every call gets the same batches. Iterable datasets
    fall back to the loader's first batches, with a warning.

    Args:
        loader: the split's loader; its dataset and ``collate_fn`` are used.
        num_batches: number of batches.
        batch_size: samples per batch; the loader's batch size when None.
        seed: seed of the sample choice.

    Returns:
        The collated batches, as the loader would yield them.
    """
    size = batch_size or loader.batch_size or 128
    dataset = loader.dataset
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        rank_zero_warn("probe data: iterable dataset; using the loader's first batches")
        with torch.random.fork_rng(devices=[]):
            iterator = iter(loader)
            return [next(iterator) for _ in range(num_batches)]
    generator = torch.Generator().manual_seed(seed)
    count = min(len(dataset), num_batches * size)
    order = torch.randperm(len(dataset), generator=generator)[:count].tolist()
    chunks = [order[i : i + size] for i in range(0, count, size)]
    with torch.random.fork_rng(devices=[]):
        return [loader.collate_fn([dataset[i] for i in chunk]) for chunk in chunks]


def local_batches(
    batches: list[Any], adapter: BatchAdapter, pl_module: LightningModule, rank: int, world: int
) -> list[Batch]:
    """Return this rank's round-robin share of ``batches``, adapted and moved to the device."""
    mine = batches[rank::world]
    out: list[Batch] = []
    for batch in mine:
        inputs, targets = adapter(batch)
        moved = pl_module.transfer_batch_to_device((inputs, targets), pl_module.device, 0)
        out.append((moved[0], moved[1]))
    return out
