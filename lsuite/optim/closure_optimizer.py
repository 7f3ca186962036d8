"""A base for optimizers that call Lightning's closure several times and wrap a base optimizer.

Lightning's automatic optimisation calls ``optimizer.step(closure)`` where the closure runs
``training_step``, zeroes the gradients and calls backward. A `ClosureOptimizer` (`SAM`,
`EntropySGD`) calls that closure more than once per step, at weights it moves itself, then
restores the weights and lets a base optimizer (SGD, Adam...) take the actual step. The base
optimizer is built from a factory over the wrapper's parameter groups and shares its
``param_groups`` and ``state`` with it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase
from torch.optim import LBFGS, Optimizer
from typing_extensions import override

from lsuite.errors import ConfigError, require


@dataclass(frozen=True)
class ClosureRequirements:
    """What a closure optimizer needs from the config, worded for its error messages.

    Attributes:
        name: the optimizer's name in messages, e.g. ``"SAM"``.
        check_settings: checks the optimizer's scalar settings; its parameter names are the
            ``optim.*`` keys it checks.
        closure_calls: how often one step calls the closure, e.g. ``"twice"``.
        same_batch: the closure calls that must see one batch, e.g. ``"both passes of a step"``.
    """

    name: str
    check_settings: Callable[..., None]
    closure_calls: str
    same_batch: str

    def settings_keys(self) -> tuple[str, ...]:
        """Return the ``optim.*`` keys that `check_settings` takes, in its order."""
        return tuple(inspect.signature(self.check_settings).parameters)


def check_base_optimizer(optimizer_class: type) -> None:
    """Check that a closure optimizer can wrap optimizers of this class: they step without one.

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


class ClosureOptimizer(Optimizer):
    """Wrap a base optimizer for a ``step`` that calls Lightning's closure more than once.

    ``param_groups``, ``state`` and ``defaults`` are the base optimizer's own objects, so a
    learning-rate scheduler built on the wrapper schedules the base learning rate, and the state
    dict holds the base optimizer's state (momentum buffers...). Subclasses implement ``step``
    (and ``connect``, when they keep more than the module), set `requirements`, and list in
    `_transient` every attribute that ``connect`` sets (not pickled, None after unpickling).

    Args:
        params: the parameters or parameter groups to optimise.
        base_optimizer: an optimizer class or factory called as ``base_optimizer(param_groups,
            **base_kwargs)`` (e.g. a Hydra partial of ``torch.optim.SGD``).
        **base_kwargs: passed to ``base_optimizer`` (e.g. ``lr`` when it is a class).

    Raises:
        ConfigError: for a base optimizer that needs a closure itself, or a factory that does
            not return a ``torch.optim.Optimizer``.
    """

    requirements: ClassVar[ClosureRequirements]
    """The optimizer's name and what it needs from the trainer, for `lsuite.config.validate`."""

    _transient: ClassVar[tuple[str, ...]] = ("_module",)
    """Attributes set by `connect`: not pickled, None after unpickling."""

    _module: nn.Module | None
    """The trained network, whose normalisation statistics `_statistics_frozen` keeps."""

    in_second_pass: bool = False
    """True while the closure runs at moved weights (metrics should not be logged)."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: Callable[..., Optimizer],
        **base_kwargs: Any,
    ) -> None:
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
        self.in_second_pass = False
        for name in self._transient:
            setattr(self, name, None)

    def connect(
        self,
        module: nn.Module | None = None,
        no_sync: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        """Tell the optimizer which module it trains (what `lsuite.model.Classifier` does).

        Args:
            module: the network; its normalisation layers keep their running statistics while
                the closure runs at moved weights (`_statistics_frozen`). None: every call of
                the closure updates them.
            no_sync: a context factory under which backward does not all-reduce (Lightning's
                ``trainer.strategy.block_backward_sync``); unused here, see `SAM.connect`.
        """
        del no_sync
        self._module = module

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
        """Add a parameter group to the base optimizer (and so to this one, which shares them).

        Args:
            param_group: the group, with ``params`` and optional hyperparameters.
        """
        base = self.__dict__.get("base_optimizer")
        if base is None:  # Optimizer.__init__ building the wrapper's own groups
            super().add_param_group(param_group)
        else:
            base.add_param_group(param_group)

    @override
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in self._transient:
            state.pop(name, None)
        return state

    @override
    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for name in self._transient:
            setattr(self, name, None)

    def _require_closure(self, closure: Callable[[], Any] | None) -> Callable[[], Any]:
        """Return ``closure``, raising for None (what fp16 loss scaling passes).

        Returns:
            ``closure``.

        Raises:
            RuntimeError: when ``closure`` is None.
        """
        if closure is None:
            raise RuntimeError(
                f"{type(self).__name__}.step needs a closure that recomputes the loss and "
                "gradients; fp16 loss scaling (precision=16-mixed) steps without one, use "
                "32-true or bf16-mixed"
            )
        return closure

    def _params_with_grad(self) -> list[Tensor]:
        """Return every parameter that has a gradient, in parameter-group order."""
        return [p for group in self.param_groups for p in group["params"] if p.grad is not None]

    def _statistics_frozen(self) -> AbstractContextManager[Any]:
        """Return `bn_frozen` of the connected module, or a no-op when none is connected."""
        return nullcontext() if self._module is None else bn_frozen(self._module)

    @staticmethod
    @torch.no_grad()
    def _restore(saved: Iterable[tuple[Tensor, Tensor]]) -> None:
        """Copy each saved value back into its parameter, bit for bit."""
        for param, weights in saved:
            param.copy_(weights)


def _factory_class(factory: Any) -> type | None:
    """Return the class a factory builds (unwrapping partials), or None when it is unknown."""
    while isinstance(factory, partial):
        factory = factory.func
    return factory if isinstance(factory, type) else None


def _needs_closure(optimizer_class: type) -> bool:
    if issubclass(optimizer_class, (LBFGS, ClosureOptimizer)):
        return True
    try:
        closure = inspect.signature(optimizer_class.step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return closure is not None and closure.default is inspect.Parameter.empty


__all__ = [
    "ClosureOptimizer",
    "ClosureRequirements",
    "bn_frozen",
    "check_base_optimizer",
]
