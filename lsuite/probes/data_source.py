"""Fixed probe batches and every reduction over data (sums and counts, all-reduced across ranks)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from lsuite.errors import ConfigError

Batch = tuple[Any, Tensor]
"""``(inputs, targets)``; ``targets`` has the batch dimension first, ``(B, ...)``."""

BatchAdapter = Callable[[Any], Batch]
"""Maps one batch as the data loader yields it to ``(inputs, targets)``."""


class PeerFailure(RuntimeError):
    """Another rank's probe failed; this rank stops its own measurement at the next reduction."""


STATUS_SIZE = 2
"""Length of the status vector ``[failed, done]`` all-reduced before every reduction over data."""


def default_batch_adapter(batch: Any) -> Batch:
    """Return ``(batch[0], batch[1])`` for a tuple or list batch, or ``(x, y)`` for a dict batch.

    Args:
        batch: a batch from a data loader.

    Returns:
        ``(inputs, targets)``.

    Raises:
        ConfigError: when the batch has another shape; pass a ``batch_adapter`` then.
    """
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, dict):
        for x_key, y_key in (("x", "y"), ("input", "target"), ("inputs", "targets")):
            if x_key in batch and y_key in batch:
                return batch[x_key], batch[y_key]
    raise ConfigError(
        f"batch_adapter: got a batch of type {type(batch).__name__}; the default expects (inputs, "
        "targets, ...) or a dict with keys x/y; pass batch_adapter=callable(batch) -> "
        "(inputs, targets)"
    )


class DataSource:
    """A fixed list of probe batches on this rank, with sample-weighted reductions over all ranks.

    Every loss or curvature quantity is the mean over all probe samples of all ranks: a quantity
    ``q_b`` that is a mean over batch ``b`` with ``n_b`` samples enters as ``sum_b n_b q_b / N``.

    Args:
        batches: ``(inputs, targets)`` pairs held by this rank, already on the model's device.
        reduce_sum: all-reduce (sum over ranks) of a tensor; identity when running in one process.
        name: the split the batches come from, e.g. ``"train"`` or ``"val"``.
        world_size: number of ranks sharing the data.
        rank: this rank's index.
    """

    def __init__(
        self,
        batches: Sequence[Batch],
        *,
        reduce_sum: Callable[[Tensor], Tensor] | None = None,
        name: str = "train",
        world_size: int = 1,
        rank: int = 0,
    ) -> None:
        self.batches = list(batches)
        self.name = name
        self.world_size = world_size
        self.rank = rank
        self._reduce_sum = reduce_sum
        local = torch.tensor(float(sum(batch_size(b) for b in self.batches)), dtype=torch.float64)
        self.num_samples = int(self.sum(local).item())
        if self.num_samples == 0:
            raise ConfigError(f"data ({name}): got no probe samples; expected at least one batch")

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def sum(self, value: Tensor) -> Tensor:
        """Return ``value`` summed over ranks (a collective: call it on every rank).

        Under several ranks a status ``[failed, done]`` is all-reduced first; a healthy rank sends
        ``[0, 0]``. A rank whose probe failed, or that finished, sends the same 2-element status in
        its closing loop (see `lsuite.session.sync`), so a non-zero total means a peer stopped and
        this rank stops too, with the same sequence of collectives as its peers.

        Raises:
            PeerFailure: when another rank's probe failed or finished early.
        """
        if self._reduce_sum is None:
            return value
        device = value.device
        status = torch.zeros(STATUS_SIZE, dtype=torch.float64, device=device)
        if bool(self._reduce_sum(status).any()):
            raise PeerFailure(f"data ({self.name}): a probe failed on another rank")
        return self._reduce_sum(value.clone()).to(device)

    def weights(self) -> Iterator[tuple[Batch, float]]:
        """Yield each local batch with its weight ``n_b / N`` in the global mean."""
        for batch in self.batches:
            yield batch, batch_size(batch) / self.num_samples

    def mean(self, fn: Callable[[Any, Tensor], Tensor]) -> Tensor:
        """Return the global sample-weighted mean of ``fn(inputs, targets)``, a per-batch mean.

        Args:
            fn: maps one batch to a tensor of any fixed shape that is a mean over the batch.

        Returns:
            ``sum_b n_b fn(b) / N`` over all batches of all ranks, same shape as ``fn``'s output.

        Raises:
            ConfigError: when this rank holds no batches.
        """
        total: Tensor | None = None
        for (inputs, targets), weight in self.weights():
            term = fn(inputs, targets) * weight
            total = term if total is None else total + term
        if total is None:
            raise ConfigError(
                "data: this rank holds no probe batches; use fewer ranks or more batches"
            )
        return self.sum(total)

    def shard(self, items: Iterable[int]) -> list[int]:
        """Return the items this rank owns when work (e.g. grid points) is split round-robin."""
        return [i for i in items if i % self.world_size == self.rank]


def batch_size(batch: Batch) -> int:
    """Return the number of samples in ``(inputs, targets)``: the first dimension of ``targets``."""
    return int(batch[1].shape[0])
