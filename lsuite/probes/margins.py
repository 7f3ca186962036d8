"""Output margins of a classifier over the probe data, gathered from every rank with sums."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lsuite.errors import ConfigError
from lsuite.evaluate import class_targets
from lsuite.probes.data_source import DataSource
from lsuite.probes.point import ModelPoint

MARGIN_QUANTILE = 0.1
"""The margin ``gamma`` is the ``floor(N / 10)``-th smallest output margin (the 10th percentile)."""


def margins(point: ModelPoint, source: DataSource) -> Tensor:
    """Return the output margins ``f(x)[y] - max_{j != y} f(x)[j]`` of every probe sample.

    Args:
        point: the frozen model; its outputs must be ``(B, C)`` logits for ``(B,)`` classes.
        source: the probe data.

    Returns:
        ``(N,)`` float64 margins of all ranks' samples (ranks in order, identical on every
        rank), gathered with two sums.

    Raises:
        ConfigError: when the outputs are not class logits or have fewer than two classes.
    """
    local: list[Tensor] = []
    with torch.no_grad():
        for inputs, targets in source:
            logits = point.outputs(inputs)
            classes = class_targets(logits, targets)
            if classes is None or logits.dim() != 2 or logits.shape[1] < 2:
                raise ConfigError(
                    f"margin: got outputs of shape {tuple(logits.shape)} for targets of shape "
                    f"{tuple(targets.shape)}; expected (B, C) logits, C >= 2, for (B,) class "
                    "indices"
                )
            logits = logits.double()
            rows = torch.arange(logits.shape[0], device=logits.device)
            correct = logits[rows, classes]
            others = logits.index_put((rows, classes), torch.tensor(-math.inf).to(logits))
            local.append(correct - others.max(dim=1).values)
    mine = torch.cat(local) if local else torch.zeros(0, dtype=torch.float64)
    device = mine.device
    counts = torch.zeros(source.world_size, dtype=torch.float64, device=device)
    counts[source.rank] = mine.numel()
    counts = source.sum(counts)
    offset = int(counts[: source.rank].sum())
    every = torch.zeros(int(counts.sum()), dtype=torch.float64, device=device)
    every[offset : offset + mine.numel()] = mine
    return source.sum(every)


def _margin(point: ModelPoint, source: DataSource) -> float:
    values = margins(point, source)
    k = max(1, int(values.numel() * MARGIN_QUANTILE))
    return float(torch.kthvalue(values.cpu(), k).values)


def margin_percentile(point: ModelPoint, source: DataSource) -> float:
    """Return ``gamma``, the ``max(1, floor(N / 10))``-th smallest margin of the ``N`` samples.

    Args:
        point: the frozen model (``(B, C)`` logits for ``(B,)`` classes).
        source: the probe data.

    Returns:
        The 10th-percentile margin (as Jiang et al. 2019 and their public implementation).
    """
    values = margins(point, source)
    k = max(1, int(values.numel() * MARGIN_QUANTILE))
    return float(torch.kthvalue(values.cpu(), k).values)
