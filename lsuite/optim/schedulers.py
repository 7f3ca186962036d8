"""Learning-rate schedules stepped once per optimizer step, built as Hydra partials.

Every function takes ``(optimizer, total_steps)`` plus its own config keys and returns a
``torch.optim.lr_scheduler.LRScheduler``. The LightningModule completes the partial with
``total_steps = trainer.estimated_stepping_batches`` and steps it with ``interval: step``. Below,
``s`` is the number of optimizer steps taken so far (0 for the first step), ``T`` is
``total_steps`` and ``W`` the number of warmup steps; each schedule multiplies every param group's
initial lr by a factor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, MultiStepLR

from lsuite.errors import require


def cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_fraction: float = 0.0,
    min_lr_ratio: float = 0.0,
) -> LRScheduler:
    """Build a cosine decay to ``min_lr_ratio`` with an optional linear warmup.

    The factor is ``s / W`` during warmup (``s < W``), then
    ``r + (1 - r) * (1 + cos(pi * (s - W) / (T - W))) / 2`` with ``r = min_lr_ratio``: it is 1 at
    ``s = W`` and ``r`` at ``s = T``. Loshchilov and Hutter (2017), "SGDR: Stochastic Gradient
    Descent with Warm Restarts" (without restarts).

    Args:
        optimizer: the optimizer whose lr is scheduled.
        total_steps: number of optimizer steps in the run, ``T``.
        warmup_steps: warmup length in steps; at most one of ``warmup_steps`` and
            ``warmup_fraction`` is nonzero.
        warmup_fraction: warmup length as a fraction of ``total_steps``, ``W = round(f * T)``.
        min_lr_ratio: final lr as a fraction of each param group's initial lr, in ``[0, 1]``.

    Returns:
        A ``LambdaLR`` to step after every optimizer step.

    Raises:
        ConfigError: if an argument is out of range or both warmup keys are set.
    """
    warmup = _warmup_length(total_steps, warmup_steps, warmup_fraction)
    require(
        isinstance(min_lr_ratio, (int, float)) and 0.0 <= min_lr_ratio <= 1.0,
        "scheduler.min_lr_ratio",
        min_lr_ratio,
        "a float in [0, 1]",
    )
    return LambdaLR(optimizer, _WarmupCosine(warmup, total_steps, float(min_lr_ratio)))


def constant_with_warmup(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_fraction: float = 0.0,
) -> LRScheduler:
    """Build a linear warmup (factor ``s / W``) followed by a constant lr (factor 1).

    Args:
        optimizer: the optimizer whose lr is scheduled.
        total_steps: number of optimizer steps in the run, ``T``.
        warmup_steps: warmup length in steps; at most one of ``warmup_steps`` and
            ``warmup_fraction`` is nonzero.
        warmup_fraction: warmup length as a fraction of ``total_steps``, ``W = round(f * T)``.

    Returns:
        A ``LambdaLR`` to step after every optimizer step.

    Raises:
        ConfigError: if an argument is out of range or both warmup keys are set.
    """
    warmup = _warmup_length(total_steps, warmup_steps, warmup_fraction)
    return LambdaLR(optimizer, _WarmupConstant(warmup))


def step(
    optimizer: Optimizer,
    total_steps: int,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> LRScheduler:
    """Build a step decay: multiply the lr by ``gamma`` at each milestone.

    The factor is ``gamma ** k`` where ``k`` counts the milestones ``m`` with
    ``s >= round(m * T)``. He et al. (2016) use ``milestones=(0.5, 0.75)``, ``gamma=0.1`` for CIFAR.

    Args:
        optimizer: the optimizer whose lr is scheduled.
        total_steps: number of optimizer steps in the run, ``T``.
        milestones: increasing fractions of ``total_steps``, each in ``(0, 1)``.
        gamma: multiplicative decay at each milestone, in ``(0, 1]``.

    Returns:
        A ``MultiStepLR`` to step after every optimizer step.

    Raises:
        ConfigError: if an argument is out of range.
    """
    _check_total_steps(total_steps)
    fractions = tuple(milestones)
    require(
        len(fractions) >= 1
        and all(isinstance(m, (int, float)) and 0.0 < m < 1.0 for m in fractions)
        and all(a < b for a, b in pairwise(fractions)),
        "scheduler.milestones",
        milestones,
        "a non-empty, increasing list of fractions in (0, 1)",
    )
    require(
        isinstance(gamma, (int, float)) and 0.0 < gamma <= 1.0,
        "scheduler.gamma",
        gamma,
        "a float in (0, 1]",
    )
    return MultiStepLR(optimizer, [round(m * total_steps) for m in fractions], gamma=gamma)


@dataclass
class _WarmupCosine:
    """Lr factor of `cosine`; a dataclass so ``LambdaLR.state_dict`` saves its fields."""

    warmup: int
    total: int
    min_ratio: float

    def __call__(self, s: int) -> float:
        if s < self.warmup:
            return s / self.warmup
        progress = min(1.0, (s - self.warmup) / (self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class _WarmupConstant:
    """Lr factor of `constant_with_warmup`."""

    warmup: int

    def __call__(self, s: int) -> float:
        return s / self.warmup if s < self.warmup else 1.0


def _check_total_steps(total_steps: int) -> None:
    require(
        isinstance(total_steps, int) and total_steps >= 1,
        "scheduler.total_steps",
        total_steps,
        "an int >= 1 (the number of optimizer steps in the run)",
    )


def _warmup_length(total_steps: int, warmup_steps: int, warmup_fraction: float) -> int:
    _check_total_steps(total_steps)
    require(
        isinstance(warmup_steps, int) and warmup_steps >= 0,
        "scheduler.warmup_steps",
        warmup_steps,
        "an int >= 0",
    )
    require(
        isinstance(warmup_fraction, (int, float)) and 0.0 <= warmup_fraction < 1.0,
        "scheduler.warmup_fraction",
        warmup_fraction,
        "a float in [0, 1)",
    )
    require(
        warmup_steps == 0 or warmup_fraction == 0.0,
        "scheduler.warmup_fraction",
        warmup_fraction,
        f"0.0 when scheduler.warmup_steps is set (got warmup_steps={warmup_steps}); set only one",
    )
    warmup = warmup_steps or round(warmup_fraction * total_steps)
    require(
        warmup < total_steps,
        "scheduler.warmup_steps",
        warmup,
        f"fewer warmup steps than total_steps={total_steps}",
    )
    return warmup
