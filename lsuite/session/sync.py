"""The processes a measurement runs on: rank, world size, all-reduce, barrier, failure agreement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Sync:
    """How the ranks of a measurement talk; one process by default.

    Attributes:
        rank: this process's global rank.
        world_size: number of processes measuring together.
        reduce_sum: all-reduce (sum over ranks) of a tensor; None in one process.
        barrier: waits for every rank; None in one process.
    """

    rank: int = 0
    world_size: int = 1
    reduce_sum: Callable[[Tensor], Tensor] | None = None
    barrier: Callable[[], None] | None = None

    @property
    def is_zero(self) -> bool:
        """Whether this is global rank zero (the one that writes and logs)."""
        return self.rank == 0

    def wait(self) -> None:
        """Wait for every rank (no-op in one process)."""
        if self.barrier is not None and self.world_size > 1:
            self.barrier()

    def agree_on_failure(self, failed: bool, device: torch.device) -> bool:
        """Return whether the probe failed on any rank; the same answer on every rank.

        Every rank calls this once after its probe returned or raised. It all-reduces the status
        ``[failed, 1]`` until every rank has arrived (the ``done`` total equals the world size).
        A peer still inside the probe meets the same 2-element status in its next
        `DataSource.sum` (which all-reduces ``[0, 0]`` first), sees a non-zero total, stops with
        `PeerFailure` and comes here too, so the collectives always match and no rank hangs.

        Args:
            failed: whether this rank's probe raised (a `PeerFailure` included).
            device: device of the status tensor (the model's, for NCCL).

        Returns:
            True when any rank failed.
        """
        if self.reduce_sum is None or self.world_size == 1:
            return failed
        while True:
            status = torch.tensor([float(failed), 1.0], dtype=torch.float64, device=device)
            total = self.reduce_sum(status)
            if int(total[1].item()) >= self.world_size:
                return bool(total[0].item() > 0)
