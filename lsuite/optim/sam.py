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

import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase
from torch.optim import LBFGS, Optimizer
from typing_extensions import override

from lsuite.errors import ConfigError, require

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


def check_base_optimizer(optimizer_class: type) -> None:
    """Check that SAM can wrap optimizers of this class: they must step without a closure.

    Args:
        optimizer_class: the base optimizer's class, e.g. ``torch.optim.SGD``.

    Raises:
        ConfigError: for a class that is not a ``torch.optim.Optimizer``, or one that evaluates
            the loss itself (LBFGS, SAM, any ``step(closure)`` without a default).
    """
    name = f"{optimizer_class.__module__}.{optimizer_class.__qualname__}"
    require(
        issubclass(optimizer_class, Optimizer),
        "optim.base_optimizer",
        name,
        "a torch.optim.Optimizer class or partial, e.g. torch.optim.SGD",
    )
    require(
        not _needs_closure(optimizer_class),
        "optim.base_optimizer",
        name,
        "an optimizer that steps without a closure, e.g. torch.optim.SGD (LBFGS and SAM "
        "evaluate the loss themselves, so SAM cannot wrap them)",
    )


@contextmanager
def bn_frozen(module: nn.Module) -> Iterator[None]:
    """Keep the running statistics of every normalisation layer of ``module`` as they are.

    Inside the block, BatchNorm layers in training mode still normalise with the statistics of
    the current batch; on exit ``running_mean``, ``running_var`` and ``num_batches_tracked`` of
    every BatchNorm (and InstanceNorm with running statistics) are copied back, bit for bit.

    Args:
        module: the network.

    Yields:
        None.
    """
    saved = [
        (layer, {name: buffer.clone() for name, buffer in layer.named_buffers(recurse=False)})
        for layer in module.modules()
        if isinstance(layer, _NormBase)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, buffers in saved:
                for name, value in buffers.items():
                    getattr(layer, name).copy_(value)


class SAM(Optimizer):
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
        optimizer_class = _factory_class(base_optimizer)
        if optimizer_class is not None:
            check_base_optimizer(optimizer_class)
        super().__init__(params, {})
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        if not isinstance(self.base_optimizer, Optimizer):
            raise ConfigError(
                f"optim.base_optimizer: got a factory returning "
                f"{type(self.base_optimizer).__name__}; expected a torch.optim.Optimizer"
            )
        check_base_optimizer(type(self.base_optimizer))
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self.defaults = self.base_optimizer.defaults
        self.rho = float(rho)
        self.adaptive = bool(adaptive)
        self.eps = float(eps)
        self.perturbation: Perturbation = perturbation
        self.in_second_pass = False
        self._module: nn.Module | None = None
        self._no_sync: Callable[[], AbstractContextManager[Any]] | None = None

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
        self._module = module
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
        if closure is None:
            raise RuntimeError(
                "SAM.step needs a closure that recomputes the loss and gradients; fp16 loss "
                "scaling (precision=16-mixed) steps without one, use 32-true or bf16-mixed"
            )
        with torch.enable_grad(), self._first_pass_context():
            loss = closure()
        saved = self._ascend()
        if not saved:  # no gradients (e.g. SWA's BatchNorm epoch): nothing to step
            return loss
        self.in_second_pass = True
        try:
            frozen = nullcontext() if self._module is None else bn_frozen(self._module)
            with torch.enable_grad(), frozen:
                closure()
        finally:
            self.in_second_pass = False
            with torch.no_grad():
                for param, weights in saved:
                    param.copy_(weights)
        self.base_optimizer.step()
        return loss

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the base optimizer's state and keep sharing its groups and state.

        Args:
            state_dict: as returned by `state_dict`.
        """
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state

    @override
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group to the base optimizer (and so to SAM, which shares its groups).

        Args:
            param_group: the group, with ``params`` and optional hyperparameters.
        """
        base = self.__dict__.get("base_optimizer")
        if base is None:  # Optimizer.__init__ building SAM's own groups
            super().add_param_group(param_group)
        else:
            base.add_param_group(param_group)

    @override
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_module", None)
        state.pop("_no_sync", None)
        return state

    @override
    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._module = None
        self._no_sync = None

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
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
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


def _factory_class(factory: Any) -> type | None:
    """Return the class a factory builds (unwrapping partials), or None when it is unknown."""
    while isinstance(factory, partial):
        factory = factory.func
    return factory if isinstance(factory, type) else None


def _needs_closure(optimizer_class: type) -> bool:
    if issubclass(optimizer_class, (LBFGS, SAM)):
        return True
    try:
        closure = inspect.signature(optimizer_class.step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return closure is not None and closure.default is inspect.Parameter.empty


__all__ = ["ASAM_ETA", "SAM", "Perturbation", "bn_frozen", "check_base_optimizer", "check_settings"]
