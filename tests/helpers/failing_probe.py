"""A test-only probe that raises on one rank (or every rank) after some reductions over data."""

import os
from dataclasses import dataclass

from lsuite.probes.base import Probe, ProbeResult


@dataclass(frozen=True)
class FailingResult(ProbeResult):
    loss: float


class FailingProbe(Probe):
    """Take ``sums`` data means, raising ``RuntimeError("planted probe failure")`` on ``fail_rank``
    after ``fail_after`` of them (``fail_rank=None``: every rank; ``-1``: no rank)."""

    def __init__(self, fail_rank=None, fail_after=2, sums=5, name=None):
        super().__init__(name)
        self.fail_rank = fail_rank
        self.fail_after = fail_after
        self.sums = sums

    def run(self, point, data, *, generator, **anchors):
        source = next(iter(data.values()))
        rank = source.rank if source.world_size > 1 else int(os.environ.get("RANK", "0"))
        loss = 0.0
        for i in range(self.sums):
            if i == self.fail_after and self.fail_rank in (None, rank):
                raise RuntimeError(f"planted probe failure on rank {rank}")
            loss = float(source.mean(lambda x, y: point.loss(x, y).detach().double()))
        return FailingResult(loss=loss)
