"""Turn per-batch values of many points into sample-weighted means over all ranks.

Every mean is the sample-weighted mean over all batches of all ranks: each rank evaluates every
point on its own share of the batches and one ``DataSource.sum`` per split adds the partial sums
(so under DDP the grid work is shared by splitting the data, not the points).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from lsuite.probes.data_source import DataSource


@dataclasses.dataclass(frozen=True)
class SplitValues:
    """Mean loss and accuracy of every point on one split.

    Attributes:
        loss: ``(N,)`` float64 mean loss per point (mean over all probe samples of all ranks).
        accuracy: ``(N,)`` float64 accuracy per point, or None when it is undefined (see
            `class_targets`; always defined with an ``accuracy_fn``).
    """

    loss: Tensor
    accuracy: Tensor | None


def reduce_values(
    source: DataSource, values: Tensor, num_points: int, device: torch.device
) -> SplitValues:
    """Weight ``(num_local_batches, N, 2)`` batch values into means over all ranks."""
    weights = torch.tensor(
        [[w, w / max(y.numel(), 1)] for (_, y), w in source.weights()],
        dtype=torch.float64,
        device=device,
    )  # (num_local_batches, 2): loss means and correct counts
    if values.shape[0] > 0:
        local = torch.einsum("bk,bnk->nk", weights, values.to(torch.float64))
    else:
        local = torch.zeros(num_points, 2, dtype=torch.float64, device=device)
    total = source.sum(local.T.contiguous()).cpu()  # (2, N)
    accuracy = None if bool(torch.isnan(total[1]).all()) else total[1]
    return SplitValues(loss=total[0], accuracy=accuracy)
