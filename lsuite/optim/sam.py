"""Sharpness-aware minimisation (SAM and ASAM) as a two-pass optimizer for Lightning's loop.

Lightning's automatic optimisation calls ``optimizer.step(closure)`` where the closure runs
``training_step``, zeroes the gradients and calls backward. `SAM.step` calls it twice: once at the
weights ``w`` (gradient ``g``), once at ``w + e`` after an ascent step ``e``; it then restores
``w`` and lets the base optimizer step with the second gradient. Foret et al. (2021),
"Sharpness-Aware Minimization for Efficiently Improving Generalization"; the adaptive variant is
Kwon et al. (2021), "ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant Learning of
Deep Neural Networks".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from typing_extensions import override

from lsuite.errors import require
from lsuite.optim.closure_optimizer import (
    ClosureOptimizer,
    ClosureRequirements,
    bn_frozen,
    check_base_optimizer,
)

Perturbation = Literal["local", "synchronized"]
"""Which gradient sets the ascent step under data parallelism: each rank's own, or the mean."""

ASAM_ETA = 0.01
"""The ``eta`` of ASAM's normalisation ``T = |w| + eta`` (Kwon et al. 2021 use 0.01)."""

_PERTURBATIONS = ("local", "synchronized")


def check_settings(rho: float = 0.05, eps: float = 1e-12, perturbation: str = "local") -> None:
    """Check SAM's scalar settings, naming the ``optim.*`` key that is wrong.

    Args:
        rho: radius of the ascent step.
        eps: added to the gradient norm before dividing by it.
        perturbation: ``"local"`` or ``"synchronized"``.

    Raises:
        ConfigError: when a value is out of range.
    """
    require(
        isinstance(rho, (int, float)) and not isinstance(rho, bool) and rho > 0,
        "optim.rho",
        rho,
        "a number > 0 (the radius of the ascent step; ASAM uses about 10x SAM's)",
    )
    require(isinstance(eps, (int, float)) and eps > 0, "optim.eps", eps, "a number > 0")
    require(
        perturbation in _PERTURBATIONS,
        "optim.perturbation",
        perturbation,
        f"one of {', '.join(_PERTURBATIONS)}",
    )


class SAM(ClosureOptimizer):
    """Minimise the worst loss in a ``rho``-ball: ascend to ``w + e``, then descend from ``w``.

    One `step` calls the closure at ``w`` (gradient ``g``), moves to ``w + e`` with
    ``e = rho * g / (||g|| + eps)``, or for ASAM (``adaptive=True``)
    ``e = rho * T^2 g / (||T g|| + eps)`` with ``T = |w| + ASAM_ETA`` elementwise over every
    parameter, calls the closure again (``in_second_pass`` is True during that call), restores
    ``w`` exactly and steps the base optimizer with the second gradient. Norms run over all
    parameters with a gradient. Gradient clipping that acts inside the closure (Lightning's)
    clips both gradients; clipping by norm leaves ``e`` unchanged.

    ``param_groups`` and ``state`` are the base optimizer's own objects, so a learning-rate
    scheduler built on SAM schedules the base learning rate, and `state_dict` holds the base
    optimizer's state (momentum buffers...).

    Call `connect` with the trained module so the second pass leaves BatchNorm statistics as
    the first pass set them, and, under DDP with ``perturbation="local"``, with a ``no_sync``
    context so the first backward skips the gradient all-reduce (each rank then ascends along
    its own gradient: m-sharpness, Foret et al. 2021). With ``"synchronized"`` both gradients
    are all-reduced and every rank takes the same ascent step. The descent gradient is always
    averaged across ranks.

    Args:
        params: the parameters or parameter groups to optimise.
        base_optimizer: an optimizer class or factory called as ``base_optimizer(param_groups,
            **base_kwargs)`` (e.g. a Hydra partial of ``torch.optim.SGD``).
        rho: radius of the ascent step (> 0).
        adaptive: use ASAM's scale-invariant ascent step.
        eps: added to the gradient norm before dividing by it (> 0).
        perturbation: ``"local"`` or ``"synchronized"`` ascent step under data parallelism.
        **base_kwargs: passed to ``base_optimizer`` (e.g. ``lr`` when it is a class).

    Raises:
        ConfigError: for ``rho <= 0``, ``eps <= 0``, an unknown ``perturbation``, or a base
            optimizer that needs a closure itself.
    """

    requirements: ClassVar[ClosureRequirements] = ClosureRequirements(
        name="SAM",
        check_settings=check_settings,
        closure_calls="twice",
        same_batch="both passes of a step",
    )

    _transient: ClassVar[tuple[str, ...]] = ("_module", "_no_sync")

    _no_sync: Callable[[], AbstractContextManager[Any]] | None
    """Skips DDP's gradient all-reduce for the first pass (see `connect`)."""

    in_second_pass: bool = False
    """True while the closure runs at the perturbed weights (metrics should not be logged)."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: Callable[..., Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        eps: float = 1e-12,
        perturbation: Perturbation = "local",
        **base_kwargs: Any,
    ) -> None:
        check_settings(rho, eps, perturbation)
        super().__init__(params, base_optimizer, **base_kwargs)
        self.rho = float(rho)
        self.adaptive = bool(adaptive)
        self.eps = float(eps)
        self.perturbation: Perturbation = perturbation

    @override
    def connect(
        self,
        module: nn.Module | None = None,
        no_sync: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        """Tell SAM which module it trains and how to skip DDP's gradient all-reduce.

        Args:
            module: the network; its normalisation layers keep their running statistics during
                the second pass (see `bn_frozen`). None: they update in both passes.
            no_sync: a context factory under which backward does not all-reduce, e.g. a DDP
                module's ``no_sync`` or Lightning's ``trainer.strategy.block_backward_sync``;
                used for the first pass when ``perturbation="local"``.
        """
        super().connect(module)
        self._no_sync = no_sync

    @override
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Take one SAM step; ``closure`` zeroes the gradients, computes the loss, calls backward.

        Args:
            closure: called twice (Lightning's automatic optimisation passes one).

        Returns:
            The closure's result at the unperturbed weights (the first call).

        Raises:
            RuntimeError: without a closure (e.g. fp16 loss scaling, which steps without one),
                or with ``perturbation="local"`` under torch.distributed and no ``no_sync``.
        """
        closure = self._require_closure(closure)
        with torch.enable_grad(), self._first_pass_context():
            loss = closure()
        saved = self._ascend()
        if not saved:  # no gradients (e.g. SWA's BatchNorm epoch): nothing to step
            return loss
        self.in_second_pass = True
        try:
            with torch.enable_grad(), self._statistics_frozen():
                closure()
        finally:
            self.in_second_pass = False
            self._restore(saved)
        self.base_optimizer.step()
        return loss

    def _first_pass_context(self) -> AbstractContextManager[Any]:
        if self.perturbation == "synchronized":
            return nullcontext()
        if self._no_sync is not None:
            return self._no_sync()
        if (
            torch.distributed.is_available()
            and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1
        ):
            raise RuntimeError(
                "SAM(perturbation='local') under torch.distributed needs "
                "connect(no_sync=...) to skip the first all-reduce, or perturbation='synchronized'"
            )
        return nullcontext()

    @torch.no_grad()
    def _ascend(self) -> list[tuple[Tensor, Tensor]]:
        """Move every parameter with a gradient to ``w + e``; return ``(param, w)`` pairs."""
        params = self._params_with_grad()
        if not params:
            return []
        scales = [p.abs() + ASAM_ETA if self.adaptive else None for p in params]
        scaled = [p.grad if t is None else t * p.grad for p, t in zip(params, scales, strict=True)]
        device = params[0].device
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(tg).to(device) for tg in scaled])
        )
        factor = self.rho / (norm + self.eps)
        saved = []
        for p, t, tg in zip(params, scales, scaled, strict=True):
            step = tg * factor.to(p.device) if t is None else t * tg * factor.to(p.device)
            saved.append((p, p.detach().clone()))
            p.add_(step.to(p.dtype))
        return saved


__all__ = ["ASAM_ETA", "SAM", "Perturbation", "bn_frozen", "check_base_optimizer", "check_settings"]
