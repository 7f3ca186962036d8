"""BatchNorm statistics recomputed at evaluated points, on a fit's first training batches.

Used by the modules that evaluate networks at points they do not train directly (a curve's or a
simplex's grid, a subspace's midpoint and line): every point gets running statistics of its own,
the equal-weight mean over a few training batches (`lsuite.probes.batch_norm_stats`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lsuite.functional.params import Params
from lsuite.probes.batch_norm_stats import BatchNormRecompute
from lsuite.probes.data_source import DataSource
from lsuite.probes.point import snapshot


def has_batch_norm(net: nn.Module) -> bool:
    """Whether ``net`` has a BatchNorm layer that tracks running statistics."""
    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in net.modules())


def training_loader(module: LightningModule, fit_loader: Any) -> Any:
    """Return the training loader: the datamodule's, else the one given to ``fit``.

    Args:
        module: the LightningModule, attached to a Trainer.
        fit_loader: the loader kept at ``on_train_start`` (for a test after fit), or None.

    Returns:
        A loader of ``(inputs, targets, ...)`` batches.

    Raises:
        RuntimeError: without a datamodule or a fit's loaders.
    """
    trainer = module.trainer
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None:
        return datamodule.train_dataloader()
    loader = trainer.train_dataloader
    if loader is None:  # a test after fit: the loader fit used
        loader = fit_loader
    if loader is None:  # the sanity check runs before fit loads them: ask fit's source
        source = getattr(trainer.fit_loop, "_data_source", None)
        if source is not None and source.is_defined():
            loader = source.dataloader()
    if loader is None:
        raise RuntimeError(
            "BatchNorm statistics at every evaluated point are recomputed on training "
            "batches: pass a datamodule, or fit with train loaders first "
            "(trainer.fit(module, train_loader, ...)), before validating or testing this module"
        )
    return loader


def first_training_batches(
    module: LightningModule, count: int, fit_loader: Any
) -> list[tuple[Tensor, Tensor]]:
    """Return the first ``count`` training batches ``(inputs, targets)`` on the module's device.

    The loader is iterated afresh under a forked RNG: its shuffle does not move the training RNG.

    Args:
        module: the LightningModule, attached to a Trainer.
        count: the number of batches (fewer when the loader has fewer).
        fit_loader: see `training_loader`.

    Returns:
        The batches (this rank's).
    """
    batches = []
    with torch.random.fork_rng(devices=[]):
        for batch in training_loader(module, fit_loader):
            batches.append((batch[0].to(module.device), batch[1].to(module.device)))
            if len(batches) == count:
                break
    return batches


def recompute_batch_norm(
    net: nn.Module, batches: Sequence[tuple[Tensor, Tensor]], points: Sequence[Params]
) -> list[Params]:
    """Return ``net``'s buffers with the BatchNorm statistics recomputed at every point.

    Args:
        net: the network (a skeleton whose parameter slots are empty works too); not modified.
        batches: the training batches the statistics are averaged over (on this rank).
        points: the parameters of each point (``net``'s parameter names).

    Returns:
        One dict of ``net``'s buffers per point.
    """
    detached = [{k: v.detach() for k, v in params.items()} for params in points]
    if not detached:
        return []
    # with_params: a stripped skeleton's snapshot has no parameters of its own (nor a device)
    point = snapshot(net, F.cross_entropy).with_params(detached[0])
    recompute = BatchNormRecompute(point, DataSource(batches), len(batches))
    return [recompute(params) for params in detached]
