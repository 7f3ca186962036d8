"""A LightningModule that trains a Bezier curve or polygonal chain between two frozen networks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lsuite.errors import ConfigError, require
from lsuite.functional.curves import CURVE_KINDS, CurveKind, curve_coefficients, curve_weights
from lsuite.model.classifier import OptimizerFactory, SchedulerFactory
from lsuite.model.point_combination import PointCombination, load_points


class CurveModule(PointCombination):
    """Train the bends of a curve ``w(t)`` from ``start`` (``t = 0``) to ``end`` (``t = 1``).

    Garipov, Izmailov, Podoprikhin, Vetrov, Wilson 2018, "Loss Surfaces, Mode Connectivity, and
    Fast Ensembling of DNNs". The ends are frozen trained networks (point specs: a checkpoint, a
    state dict or a run directory); the ``bends`` control points in between start on the straight
    line (bend ``i`` at ``t = i / (bends + 1)``, so the initial curve is the line) and are
    trained: each batch draws ``t ~ U(0, 1)`` from a generator seeded with ``seed`` and takes the
    loss of the network at ``w(t)`` (its tensors put into the network's parameter slots, what
    ``torch.func.functional_call`` does: any network).

    ``kind="bezier"``: ``w(t) = sum_i binom(n, i) t^i (1-t)^(n-i) w_i``, ``n = bends + 1``
    (``bends=1``: the quadratic Bezier curve). ``kind="polychain"``: straight segments through the
    bends.

    Validation and test evaluate ``num_eval_points`` evenly spaced ``t`` from 0 to 1 (odd, so
    ``t = 0.5`` is one of them): ``val/loss`` and ``val/acc`` are those at ``t = 0.5``,
    ``val/loss_max`` and ``val/error_max`` the largest over the grid; test also logs the straight
    line's ``test/line_loss_max`` and ``test/line_error_max``. ``probe_network()`` is the
    network at ``t = 0.5`` (every probe measures the midpoint; the ``curve`` probe measures the
    whole curve). This is the ``curve`` option of the ``module`` group:
    ``lsuite-train module=curve module.start=RUN_A module.end=RUN_B``.

    Args:
        net: the network (its architecture; its initial weights are unused).
        optimizer: optimizer factory, called with the bends.
        num_classes: classes ``C``.
        scheduler: learning-rate scheduler factory or None.
        l2: coefficient of ``0.5 * ||bends||^2`` (>= 0).
        start: point spec of the network at ``t = 0``.
        end: point spec of the network at ``t = 1``.
        kind: ``"bezier"`` or ``"polychain"``.
        bends: trained control points ``>= 1``.
        seed: seed of the ``t`` draws.
        num_eval_points: evaluation grid size (odd, ``>= 3``).
        bn_batches: training batches for BatchNorm statistics at every evaluated ``t``.

    Raises:
        ConfigError: without ``start`` or ``end``, or for an argument out of range.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        l2: float = 0.0,
        start: str | None = None,
        end: str | None = None,
        kind: CurveKind = "bezier",
        bends: int = 1,
        seed: int = 0,
        num_eval_points: int = 11,
        bn_batches: int = 4,
    ) -> None:
        for key, value in (("start", start), ("end", end)):
            if not value:
                raise ConfigError(
                    f"{key}: got {value!r}; expected the point spec of a trained network (a "
                    "checkpoint, a state dict or a run directory), e.g. module.start=RUN_DIR"
                )
        require(kind in CURVE_KINDS, "kind", kind, f"one of {list(CURVE_KINDS)}")
        require(
            isinstance(bends, int) and not isinstance(bends, bool) and bends >= 1,
            "bends",
            bends,
            "an int >= 1",
        )
        require(
            isinstance(num_eval_points, int) and num_eval_points >= 3 and num_eval_points % 2 == 1,
            "num_eval_points",
            num_eval_points,
            "an odd int >= 3 (t = 0.5 is on the grid)",
        )
        ends = torch.cat([load_points([start], net, "start"), load_points([end], net, "end")])
        t = torch.arange(1, bends + 1, dtype=torch.float64) / (bends + 1)
        free = torch.lerp(ends[0:1], ends[1:2], t.to(ends.dtype).unsqueeze(1))
        order = [("fixed", 0), *[("free", j) for j in range(bends)], ("fixed", 1)]
        self.kind: CurveKind = kind
        self.bends = bends
        self.num_eval_points = num_eval_points
        self.start = str(start)
        self.end = str(end)
        super().__init__(
            net,
            optimizer,
            num_classes,
            scheduler,
            l2,
            fixed=ends,
            free=free,
            order=order,
            kind=kind,
            seed=seed,
            bn_batches=bn_batches,
        )
        grid = torch.linspace(0, 1, num_eval_points, dtype=torch.float64)
        self._evaluation = curve_coefficients(kind, grid, bends + 2)

    def coefficients(self, t: Tensor) -> Tensor:
        """Return the ``(N, M)`` coefficients of the control points at ``(N,)`` positions."""
        return curve_coefficients(self.kind, t, self.bends + 2)

    def sample_coefficients(self) -> Tensor:
        """Return the ``(M,)`` coefficients at ``t ~ U(0, 1)`` drawn from the module's generator."""
        t = float(torch.rand(1, generator=self.generator, dtype=torch.float64))
        weights = curve_weights(self.kind, t, self.bends + 2)
        return torch.tensor(weights, dtype=torch.float64)

    def centre_coefficients(self) -> Tensor:
        """Return the ``(M,)`` coefficients at ``t = 0.5``."""
        return self.coefficients(torch.tensor([0.5], dtype=torch.float64))[0]

    def reference_coefficients(self) -> Tensor:
        """Return the straight line ``(1 - t) start + t end`` on the evaluation grid."""
        t = torch.linspace(0, 1, self.num_eval_points, dtype=torch.float64)
        rows = torch.zeros(len(t), self.bends + 2, dtype=torch.float64)
        rows[:, 0], rows[:, -1] = 1 - t, t
        return rows

    def evaluation_coefficients(self) -> Tensor:
        """Return the ``(N, M)`` coefficients of the evaluation grid ``t = 0, ..., 1``."""
        return self._evaluation
