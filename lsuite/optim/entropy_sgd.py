"""Entropy-SGD: descend the local entropy, estimated by Langevin steps, for Lightning's loop.

Lightning's automatic optimisation calls ``optimizer.step(closure)`` where the closure runs
``training_step`` on the current batch, zeroes the gradients and calls backward. `EntropySGD.step`
calls it ``langevin_steps`` times, once per Langevin step of the inner loop, and then lets a base
optimizer step towards the average of the Langevin iterates. Chaudhari, Choromanska, Soatto,
LeCun, Baldassi, Borgs, Chayes, Sagun, Zecchina (2017), "Entropy-SGD: Biasing Gradient Descent
Into Wide Valleys", Algorithm 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import override

from lsuite.errors import require
from lsuite.optim.closure_optimizer import ClosureOptimizer, ClosureRequirements

STATE_KEY = "entropy_sgd"
"""Key of `EntropySGD`'s own state (outer step count, noise generator) in its `state_dict`."""


def check_settings(
    langevin_steps: int = 20,
    gamma: float = 1e-4,
    scoping: float = 1e-3,
    noise: float = 1e-4,
    langevin_lr: float = 0.1,
    alpha: float = 0.75,
    seed: int = 0,
) -> None:
    """Check Entropy-SGD's scalar settings, naming the ``optim.*`` key that is wrong.

    Args:
        langevin_steps: number ``L`` of Langevin steps per outer step.
        gamma: initial scope ``gamma_0``.
        scoping: growth rate ``gamma_1`` of the scope per outer step.
        noise: thermal noise ``epsilon`` of the Langevin steps.
        langevin_lr: step size ``eta'`` of the Langevin steps.
        alpha: weight of the newest Langevin iterate in the running average.
        seed: seed of the noise generator.

    Raises:
        ConfigError: when a value is out of range.
    """

    def number(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    require(
        isinstance(langevin_steps, int)
        and not isinstance(langevin_steps, bool)
        and langevin_steps >= 1,
        "optim.langevin_steps",
        langevin_steps,
        "an int >= 1 (the paper uses 20)",
    )
    require(number(gamma) and gamma >= 0, "optim.gamma", gamma, "a number >= 0 (the scope)")
    require(number(scoping) and scoping >= 0, "optim.scoping", scoping, "a number >= 0")
    require(number(noise) and noise >= 0, "optim.noise", noise, "a number >= 0")
    require(
        number(langevin_lr) and langevin_lr > 0, "optim.langevin_lr", langevin_lr, "a number > 0"
    )
    require(number(alpha) and 0 < alpha <= 1, "optim.alpha", alpha, "a number in (0, 1]")
    require(isinstance(seed, int) and not isinstance(seed, bool), "optim.seed", seed, "an int")


class EntropySGD(ClosureOptimizer):
    """Step towards the mean of Langevin samples around ``x``: gradient descent on local entropy.

    One `step` at the weights ``x``, with scope ``gamma_t = gamma * (1 + scoping) ** t`` where
    ``t`` counts the outer steps taken before (0 for the first):

    1. ``x' = mu = x``; for ``l = 1..L`` (``L = langevin_steps``) the closure computes
       ``g = grad f(x')`` on the current batch, then
       ``x' <- x' - langevin_lr * (g - gamma_t * (x - x')) + sqrt(langevin_lr) * noise * xi``
       with ``xi ~ N(0, I)`` and ``mu <- (1 - alpha) * mu + alpha * x'``;
    2. ``x`` is restored exactly, its gradient is set to ``x - mu`` and the base optimizer steps
       (with ``lr`` and momentum: ``x <- x - lr * (x - mu)`` for plain SGD).

    Defaults are Chaudhari et al.'s (L = 20, gamma 1e-4, scoping 1e-3, noise 1e-4, Langevin step
    0.1, alpha 0.75). Differences from the paper and from the reference implementations
    (``ucla-vision/entropy-sgd``), on purpose:

    - The outer step of Algorithm 1 is ``x <- x - eta * gamma * (x - mu)``; like both reference
      implementations, the base optimizer's ``lr`` stands for the product ``eta * gamma`` (the
      paper's ``eta`` would be ~1e4 at gamma 1e-4), so ``gamma_t`` and scoping act on the inner
      coupling only.
    - Every Langevin step uses the batch of the current training step (Lightning's closure
      re-runs ``training_step`` on it); the references draw a new minibatch for each. An epoch
      therefore has as many outer steps as an SGD epoch and ``L`` times its gradient evaluations.
    - The Langevin steps have no momentum and their noise is ``sqrt(langevin_lr) * noise`` as in
      Algorithm 1 (the references add momentum, and ``noise * sqrt(2 * langevin_lr)``); the
      references weight the old average by 0.75, i.e. ``alpha=0.25`` here.

    The closure's first call (at ``x``) gives the returned loss and the logged metrics;
    ``in_second_pass`` is True during the later calls (the name is shared with `SAM`, so the
    Classifier skips their logging); Lightning hands ``on_train_batch_end`` the output of the
    last call (the loss at the last-but-one iterate). The noise ``xi`` comes from a generator
    owned by the optimizer, seeded with ``seed``, one ``torch.randn`` of each parameter's shape
    per Langevin step in parameter-group order; its state and ``t`` are saved in `state_dict`,
    so a resumed run draws the same noise. Under DDP every closure's backward all-reduces the
    gradient and every rank draws the same noise, so the ranks keep equal weights. Gradient
    clipping that acts inside the closure (Lightning's) clips each Langevin gradient, not
    ``x - mu``. Parameters without a gradient at the first call are left alone.

    ``param_groups`` and ``state`` are the base optimizer's own objects (a learning-rate
    scheduler schedules the base ``lr``; ``langevin_lr`` is not scheduled). Call `connect` with
    the trained module so that BatchNorm running statistics come from the first Langevin step
    only: the later closures run inside `bn_frozen`, which saves the statistics and copies them
    back afterwards (the layers still normalise with each batch's statistics).

    Args:
        params: the parameters or parameter groups to optimise.
        base_optimizer: an optimizer class or factory called as ``base_optimizer(param_groups,
            **base_kwargs)`` (e.g. a Hydra partial of ``torch.optim.SGD`` with Nesterov momentum,
            as in the reference implementation).
        langevin_steps: number ``L`` of Langevin steps (closure calls) per outer step (>= 1).
        gamma: initial scope ``gamma_0`` coupling ``x'`` to ``x`` (>= 0).
        scoping: growth ``gamma_1`` of the scope, ``gamma_t = gamma_0 (1 + gamma_1)^t`` (>= 0).
        noise: thermal noise ``epsilon`` of the Langevin steps (>= 0).
        langevin_lr: Langevin step size ``eta'`` (> 0).
        alpha: weight of the newest iterate in the running average ``mu``, in (0, 1].
        seed: seed of the noise generator.
        **base_kwargs: passed to ``base_optimizer`` (e.g. ``lr`` when it is a class).

    Raises:
        ConfigError: for a setting out of range or a base optimizer that needs a closure itself.
    """

    requirements: ClassVar[ClosureRequirements] = ClosureRequirements(
        name="Entropy-SGD",
        check_settings=check_settings,
        closure_calls="once per Langevin step",
        same_batch="every Langevin step of a step",
    )

    in_second_pass: bool = False
    """True while the closure runs at a Langevin iterate after the first (do not log metrics)."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: Callable[..., Optimizer],
        langevin_steps: int = 20,
        gamma: float = 1e-4,
        scoping: float = 1e-3,
        noise: float = 1e-4,
        langevin_lr: float = 0.1,
        alpha: float = 0.75,
        seed: int = 0,
        **base_kwargs: Any,
    ) -> None:
        check_settings(langevin_steps, gamma, scoping, noise, langevin_lr, alpha, seed)
        super().__init__(params, base_optimizer, **base_kwargs)
        self.langevin_steps = int(langevin_steps)
        self.gamma = float(gamma)
        self.scoping = float(scoping)
        self.noise = float(noise)
        self.langevin_lr = float(langevin_lr)
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.outer_steps = 0
        first = next((p for group in self.param_groups for p in group["params"]), None)
        device = first.device if first is not None else torch.device("cpu")
        self.generator = torch.Generator(device=device).manual_seed(self.seed)

    def scope(self) -> float:
        """Return the scope ``gamma_t = gamma * (1 + scoping) ** t`` of the next step."""
        return self.gamma * (1.0 + self.scoping) ** self.outer_steps

    @override
    def step(self, closure: Callable[[], Any] | None) -> Any:  # type: ignore[override]
        """Take one Entropy-SGD step; ``closure`` zeroes the gradients, computes the loss, backward.

        Args:
            closure: called ``langevin_steps`` times (Lightning's automatic optimisation passes
                one).

        Returns:
            The closure's result at ``x`` (the first call).

        Raises:
            RuntimeError: for ``closure=None`` (the argument has no default, so that `SAM` and
                other wrappers see that this optimizer evaluates the loss itself).
        """
        closure = self._require_closure(closure)
        with torch.enable_grad():
            loss = closure()
        params = self._params_with_grad()
        if not params:  # no gradients (e.g. SWA's BatchNorm epoch): nothing to step
            return loss
        gamma = self.scope()
        anchor = [p.detach().clone() for p in params]
        average = [x.clone() for x in anchor]
        try:
            with self._statistics_frozen():
                for index in range(self.langevin_steps):
                    if index > 0:
                        self.in_second_pass = True
                        with torch.enable_grad():
                            closure()
                    self._langevin_step(params, anchor, average, gamma)
        finally:
            self.in_second_pass = False
            self._restore(zip(params, anchor, strict=True))
        for p, x, mu in zip(params, anchor, average, strict=True):
            p.grad = x - mu
        self.base_optimizer.step()
        self.outer_steps += 1
        return loss

    @torch.no_grad()
    def _langevin_step(
        self, params: list[Tensor], anchor: list[Tensor], average: list[Tensor], gamma: float
    ) -> None:
        """Move every ``x'`` by one Langevin step and update the running average ``mu``."""
        scale = math.sqrt(self.langevin_lr) * self.noise
        for p, x, mu in zip(params, anchor, average, strict=True):
            grad = torch.zeros_like(p) if p.grad is None else p.grad
            xi = torch.randn(
                p.shape, generator=self.generator, dtype=p.dtype, device=self.generator.device
            ).to(p.device)
            drift = grad - gamma * (x - p)
            p.add_(-self.langevin_lr * drift + scale * xi)
            mu.mul_(1.0 - self.alpha).add_(p, alpha=self.alpha)

    @override
    def state_dict(self) -> dict[str, Any]:
        """Return the base optimizer's state dict plus ``t`` and the noise generator's state.

        Returns:
            The base optimizer's ``state`` and ``param_groups``, and under `STATE_KEY` the
            outer step count ``outer_steps`` and the generator state ``generator``.
        """
        state = self.base_optimizer.state_dict()
        state[STATE_KEY] = {
            "outer_steps": self.outer_steps,
            "generator": self.generator.get_state(),
        }
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the base optimizer's state, ``t`` and the noise generator's state.

        Args:
            state_dict: as returned by `state_dict`.

        Raises:
            ValueError: for a state dict without Entropy-SGD's own state (another optimizer's).
        """
        state_dict = dict(state_dict)
        own = state_dict.pop(STATE_KEY, None)
        if own is None:
            raise ValueError(
                f"EntropySGD.load_state_dict: no '{STATE_KEY}' entry (outer step count and noise "
                "generator); the state dict is not an EntropySGD's"
            )
        super().load_state_dict(state_dict)
        self.outer_steps = int(own["outer_steps"])
        self.generator.set_state(own["generator"].cpu())


__all__ = ["STATE_KEY", "EntropySGD", "check_settings"]
