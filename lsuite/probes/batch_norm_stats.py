"""Recompute BatchNorm running statistics at a point in weight space, and say which were used."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lsuite.errors import ConfigError
from lsuite.functional.params import Params
from lsuite.probes.data_source import DataSource
from lsuite.probes.point import ModelPoint


class BatchNormRecompute:
    """Recompute BatchNorm running statistics at given weights: a ``buffers_fn``.

    Each BatchNorm layer's statistics are reset and averaged over the first ``num_batches``
    local batches (momentum ``None``: the equal-weight mean of the batch statistics, as
    ``torch.optim.swa_utils.update_bn`` does), then averaged over ranks weighted by their batch
    counts, so a multi-rank result equals the single-rank one on the same batches.

    Args:
        point: the frozen model.
        source: probe batches; the first ``num_batches`` of this rank are used.
        num_batches: number of local batches, ``>= 1``.

    Raises:
        ConfigError: when the model has no BatchNorm layer that tracks running statistics.
    """

    def __init__(self, point: ModelPoint, source: DataSource, num_batches: int) -> None:
        self.point = point
        self.source = source
        self.batches = source.batches[:num_batches]
        self.names = _bn_buffer_names(point.skeleton)

    def __call__(self, params: Params) -> Params:
        """Return the point's buffers with the statistics recomputed at ``params``.

        Args:
            params: the weights (same keys and shapes as ``point.params``).

        Returns:
            Buffers with the keys of ``point.buffers`` (fresh tensors; the point is unchanged).
        """
        buffers = {k: v.clone() for k, v in self.point.buffers.items()}
        for mean_key, var_key, count_key in self.names:
            buffers[mean_key].zero_()
            buffers[var_key].fill_(1.0)
            buffers[count_key].zero_()
        state = {**buffers, **params}
        with torch.no_grad(), _batch_norm_training(self.point.skeleton):
            for inputs, _ in self.batches:
                self.point.outputs(inputs, state, {})
        if self.source.world_size > 1:
            count = torch.tensor(
                float(len(self.batches)), dtype=torch.float64, device=self.point.device
            )
            total = self.source.sum(count)
            for mean_key, var_key, count_key in self.names:
                for key in (mean_key, var_key):
                    summed = self.source.sum(buffers[key].double() * count) / total
                    buffers[key] = summed.to(buffers[key].dtype)
                buffers[count_key] = self.source.sum(buffers[count_key])
        return buffers


def batch_norm_statistics(point: ModelPoint, recomputed: bool) -> str:
    """Say which BatchNorm statistics the evaluation used.

    Args:
        point: the frozen model.
        recomputed: whether the running statistics were recomputed at every point.

    Returns:
        ``"none"`` (no BatchNorm with running statistics), ``"batch"`` (``bn_mode="train"``),
        ``"recomputed"``, or ``"point"`` (the measured point's running statistics, for every
        point of the grid).
    """
    tracked = any(
        isinstance(m, _BatchNorm) and m.track_running_stats for m in point.skeleton.modules()
    )
    if not tracked:
        return "none"
    if point.bn_mode == "train":
        return "batch"
    return "recomputed" if recomputed else "point"


@contextmanager
def _batch_norm_training(skeleton: nn.Module) -> Iterator[None]:
    """Put the skeleton's BatchNorm layers in train mode with cumulative averaging, then restore.

    The skeleton holds no weights; its modes are restored even on error. It is not copied
    because a LightningModule skeleton references the (shared) Trainer.
    """
    layers = [m for m in skeleton.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [(m.training, m.momentum) for m in layers]
    try:
        for m in layers:
            m.training, m.momentum = True, None
        yield
    finally:
        for m, (training, momentum) in zip(layers, saved, strict=True):
            m.training, m.momentum = training, momentum


def _bn_buffer_names(skeleton: nn.Module) -> list[tuple[str, str, str]]:
    names = []
    for prefix, m in skeleton.named_modules():
        if isinstance(m, _BatchNorm) and m.track_running_stats:
            p = f"{prefix}." if prefix else ""
            names.append((f"{p}running_mean", f"{p}running_var", f"{p}num_batches_tracked"))
    if not names:
        raise ConfigError(
            "bn_recompute_batches: got a value > 0; the model has no BatchNorm layer that tracks "
            "running statistics"
        )
    return names
