"""A LightningModule that trains free points of a family of networks evaluated at combinations.

The family is ``w(c) = sum_i c_i w_i`` over ``M`` points of one network's weight space: some
frozen (``fixed``, e.g. trained solutions), some trained (``free``). Each training batch draws the
coefficients ``c`` (a subclass says how: a curve position, barycentric coordinates) and evaluates
the network at ``w(c)`` with the point's tensors in its parameter slots (what
``torch.func.functional_call`` does), so any ``nn.Module`` works unchanged. Subclasses:
`lsuite.model.curve.CurveModule`, `lsuite.model.simplex.SimplexModule`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from lsuite.anchors.files import load_point
from lsuite.errors import require
from lsuite.functional.curves import FamilyKind, PointFamily, attach_family
from lsuite.functional.flat_combination import add_rows, combine_rows
from lsuite.functional.params import Params
from lsuite.model.classifier import OptimizerFactory, SchedulerFactory
from lsuite.model.point_batch_norm import (
    first_training_batches,
    has_batch_norm,
    recompute_batch_norm,
)
from lsuite.model.skeleton import ParameterBinding


class PointCombination(LightningModule):
    """Train the free points of a family of networks; frozen points stay as they are.

    ``net`` is kept as the template: its trainable parameters always hold the network at the
    family's centre (`centre_coefficients`, refreshed after every optimizer step), and
    ``probe_network()`` returns it, with the family attached (`lsuite.functional.curves.
    find_family`), so every probe measures the centre and the ``curve`` probe the whole family.
    Its parameters keep ``requires_grad`` (probes measure trainable parameters) but are not
    trained: the forward replaces them (no gradient), and they are left out of the optimizer and
    of DDP's gradient reduction. Trained: ``free_points``, ``(K, P)``; frozen: the buffer
    ``fixed_points``, ``(F, P)``; rows flattened in the key order of ``net``'s parameters.

    Logged at validation and test, over the evaluation rows of `evaluation_coefficients`:
    ``<stage>/loss`` and ``<stage>/acc`` at the centre, ``<stage>/loss_max`` and
    ``<stage>/error_max`` (the largest mean loss and error over the rows); at test also
    ``test/line_loss_max`` and ``test/line_error_max`` over `reference_coefficients` (the
    straight line between a curve's ends, a simplex's face). With BatchNorm the
    running statistics of every row are recomputed on ``bn_batches`` training batches first
    (`lsuite.model.point_batch_norm.recompute_batch_norm`, on this rank's batches).

    Args:
        net: the network (its current weights are unused except as the template).
        optimizer: optimizer factory, called with the free points.
        num_classes: classes ``C``.
        scheduler: learning-rate scheduler factory or None.
        l2: coefficient of ``0.5 * ||free_points||^2`` added to the loss (>= 0).
        fixed: ``(F, P)`` frozen points.
        free: ``(K, P)`` initial free points.
        order: for each of the ``M = F + K`` positions, ``("fixed", i)`` or ``("free", j)``.
        kind: the family's kind (``"bezier"``, ``"polychain"``, ``"simplex"``).
        seed: seed of the generator that draws the training coefficients.
        bn_batches: training batches per evaluated row for BatchNorm statistics (>= 1).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None,
        l2: float,
        *,
        fixed: Tensor,
        free: Tensor,
        order: Sequence[tuple[str, int]],
        kind: FamilyKind,
        seed: int,
        bn_batches: int,
    ) -> None:
        super().__init__()
        require(l2 >= 0, "l2", l2, "a float >= 0")
        require(num_classes >= 2, "num_classes", num_classes, "an int >= 2")
        require(
            isinstance(bn_batches, int) and bn_batches >= 1, "bn_batches", bn_batches, "an int >= 1"
        )
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.l2 = float(l2)
        self.num_classes = num_classes
        self.bn_batches = bn_batches
        self._like = {k: p.detach() for k, p in net.named_parameters() if p.requires_grad}
        self._names = list(self._like)
        self._shapes = [p.shape for p in self._like.values()]
        # functional_call set up once: it re-walks the module tree and unties weights per call
        self._call = ParameterBinding(net, self._names)
        self.register_buffer("fixed_points", fixed.detach().clone())
        self.free_points = nn.Parameter(free.detach().clone())
        self.order = [(str(a), int(b)) for a, b in order]
        self._fixed_index = [m for m, (a, _) in enumerate(self.order) if a == "fixed"]
        self._free_index = [m for m, (a, _) in enumerate(self.order) if a == "free"]
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self._ddp_params_and_buffers_to_ignore = [f"net.{k}" for k in self._like]
        self.family = PointFamily(kind, self.points, self._fixed_index, self.centre_coefficients())
        attach_family(self.net, self.family)
        self._sums: dict[str, Tensor] = {}
        self._fit_loader: Any = None
        self._row_sets: dict[str, Tensor] = {}
        self._row_buffers: dict[str, list[Params] | None] = {}
        self._has_batch_norm = has_batch_norm(net)
        self.refresh_network()

    # -- the family --------------------------------------------------------------------------

    def points(self) -> Tensor:
        """Return the ``(M, P)`` points in order, detached (frozen and free)."""
        rows = torch.empty(
            len(self.order),
            self.fixed_points.shape[1],
            dtype=self.free_points.dtype,
            device=self.free_points.device,
        )
        rows[self._fixed_index] = self.fixed_points.to(rows.dtype)
        rows[self._free_index] = self.free_points.detach()
        return rows

    def combination(self, coefficients: Tensor) -> Tensor:
        """Return the ``(P,)`` point ``sum_i coefficients[i] w_i``, differentiable in the free ones.

        Args:
            coefficients: ``(M,)`` weights in the order of the points.

        Returns:
            The flat parameters.
        """
        c = coefficients.to(self.free_points.device, self.free_points.dtype)
        fixed = c[self._fixed_index] @ self.fixed_points.to(c.dtype)
        return fixed + c[self._free_index] @ self.free_points

    def params_at(self, coefficients: Tensor | Sequence[float]) -> Params:
        """Return the network's parameters at a combination (keys of ``net``'s parameters).

        Equal, to rounding, to splitting `combination`; the point is one autograd node
        (`lsuite.functional.flat_combination.combine_rows`) made of ``M`` elementwise
        operations, with the coefficients as Python floats.

        Args:
            coefficients: ``(M,)`` weights in the order of the points.

        Returns:
            Views of one ``(P,)`` tensor, differentiable in the free points.

        Raises:
            ValueError: for a number of coefficients other than ``M``.
        """
        c = coefficients.tolist() if isinstance(coefficients, Tensor) else list(coefficients)
        if len(c) != len(self.order):
            raise ValueError(
                f"coefficients: got {len(c)}; expected one per point ({len(self.order)})"
            )
        fixed = self.fixed_points
        if fixed.dtype != self.free_points.dtype:
            fixed = fixed.to(self.free_points.dtype)
        offset = add_rows(fixed, [c[m] for m in self._fixed_index]) if len(fixed) else None
        free = [c[m] for m in self._free_index]
        return combine_rows(self.free_points, free, offset, self._names, self._shapes)

    def forward_at(
        self, coefficients: Tensor, inputs: Tensor, buffers: Params | None = None
    ) -> Tensor:
        """Return ``(B, C)`` logits of the network at a combination (with ``buffers`` if given)."""
        return self._call(self.params_at(coefficients), inputs, buffers=buffers)

    def sample_coefficients(self) -> Tensor:
        """Return ``(M,)`` training coefficients drawn from `generator` (subclasses)."""
        raise NotImplementedError

    def centre_coefficients(self) -> Tensor:
        """Return the ``(M,)`` coefficients of the network ``probe_network()`` returns."""
        raise NotImplementedError

    def evaluation_coefficients(self) -> Tensor:
        """Return the ``(N, M)`` rows evaluated at validation and test (subclasses)."""
        raise NotImplementedError

    def regulariser(self) -> Tensor | None:
        """Return the term added to the training loss, or None (here; the simplex's volume term)."""
        return None

    def probe_network(self) -> nn.Module:
        """Return ``net`` at the family's centre, with the family attached (see the class doc)."""
        return self.net

    @torch.no_grad()
    def refresh_network(self) -> None:
        """Write the centre's weights into ``net``'s parameters."""
        centre = self.params_at(self.centre_coefficients())
        for name, p in self.net.named_parameters():
            if name in centre:
                p.copy_(centre[name])

    # -- training ----------------------------------------------------------------------------

    def forward(self, inputs: Tensor) -> Tensor:
        """Return ``(B, C)`` logits of the network at the centre."""
        return self.forward_at(self.centre_coefficients(), inputs)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Return the loss at the drawn combination (plus ``l2`` and the regulariser)."""
        del batch_idx
        inputs, targets = batch[0], batch[1]
        logits = self.forward_at(self.sample_coefficients(), inputs)
        loss = F.cross_entropy(logits, targets)
        regulariser = self.regulariser()
        objective = loss if regulariser is None else loss + regulariser
        if self.l2 > 0:
            objective = objective + 0.5 * self.l2 * self.free_points.pow(2).sum()
        sync = {"on_step": True, "on_epoch": True, "sync_dist": True}
        self.log("train/loss", loss.detach(), prog_bar=True, **sync)
        self.log("train/objective", objective.detach(), **sync)
        accuracy = (logits.detach().argmax(-1) == targets).float().mean()
        self.log("train/acc", accuracy, **sync)
        return objective

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Step the optimizer, then move ``net`` to the centre of the updated family.

        Here rather than in ``on_train_batch_end``, which Lightning calls after the callbacks'
        (a probe at that step would see the previous centre).
        """
        super().optimizer_step(*args, **kwargs)
        self.refresh_network()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the coefficient generator's state (a resumed run draws the same sequence)."""
        checkpoint["point_combination_generator"] = self.generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the coefficient generator's state."""
        state = checkpoint.get("point_combination_generator")
        if state is not None:
            self.generator.set_state(state)

    def configure_optimizers(self) -> Any:
        """Build the optimizer of the free points and, when configured, a per-step scheduler.

        Returns:
            The optimizer, or a dict with the optimizer and its step-interval scheduler.
        """
        optimizer = self.optimizer_factory(params=[self.free_points])
        if self.scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # -- evaluation --------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        """Reset the sums and recompute BatchNorm statistics at every evaluated row."""
        self._start_evaluation()

    def on_test_epoch_start(self) -> None:
        """Reset the sums and recompute BatchNorm statistics at every evaluated row."""
        self._start_evaluation()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Add the batch's loss and hits at every evaluated row."""
        self._accumulate(batch)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """Add the batch's loss and hits at every evaluated row."""
        self._accumulate(batch)

    def on_validation_epoch_end(self) -> None:
        """Log ``val/loss``, ``val/acc`` (centre), ``val/loss_max`` and ``val/error_max``."""
        self._log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        """Log ``test/loss``, ``test/acc`` (centre), ``test/loss_max`` and ``test/error_max``."""
        self._log_evaluation("test")

    def _start_evaluation(self) -> None:
        self._sums = {}
        self._row_sets = {"": self.evaluation_coefficients()}
        reference = self.reference_coefficients()
        if reference is not None and self.trainer.testing:
            self._row_sets["line_"] = reference
        self._row_buffers = {
            prefix: self.recomputed_buffers(rows) if self._has_batch_norm else None
            for prefix, rows in self._row_sets.items()
        }

    def reference_coefficients(self) -> Tensor | None:
        """Return the ``(N', M)`` rows of the flat counterpart evaluated at test, or None.

        A curve's straight line between its ends, a simplex's face of its fixed vertices:
        logged as ``test/line_loss_max`` and ``test/line_error_max``.
        """
        return None

    def recomputed_buffers(self, rows: Tensor) -> list[Params]:
        """Return BatchNorm statistics recomputed at every row on ``bn_batches`` train batches.

        Args:
            rows: ``(N, M)`` coefficients.

        Returns:
            ``N`` dicts of ``net``'s buffers (the running statistics of each point).
        """
        batches = first_training_batches(self, self.bn_batches, self._fit_loader)
        return recompute_batch_norm(self.net, batches, [self.params_at(c) for c in rows])

    def on_train_start(self) -> None:
        """Keep the training loader of fit (a ``trainer.test`` after it recomputes BatchNorm)."""
        self._fit_loader = self.trainer.train_dataloader

    def _accumulate(self, batch: Any) -> None:
        inputs, targets = batch[0], batch[1]
        for prefix, rows in self._row_sets.items():
            row_buffers = self._row_buffers[prefix]
            losses, hits = [], []
            for i, c in enumerate(rows):
                buffers = None if row_buffers is None else row_buffers[i]
                logits = self.forward_at(c, inputs, buffers)
                losses.append(F.cross_entropy(logits, targets, reduction="sum"))
                hits.append((logits.argmax(-1) == targets).sum())
            self._add(f"{prefix}loss", torch.stack(losses).double())
            self._add(f"{prefix}hits", torch.stack(hits).double())
        self._add("count", torch.tensor(float(targets.numel()), dtype=torch.float64))
        self._extra_accumulate(inputs, targets)

    def _extra_accumulate(self, inputs: Tensor, targets: Tensor) -> None:
        """Add further sums at test (the simplex's ensemble); nothing here."""
        del inputs, targets

    def _add(self, key: str, value: Tensor) -> None:
        value = value.to(self.free_points.device)
        self._sums[key] = self._sums[key] + value if key in self._sums else value

    def _reduced(self) -> dict[str, Tensor]:
        """Return the sums over all ranks."""
        if self.trainer.world_size > 1:
            return {
                k: self.trainer.strategy.reduce(v, reduce_op="sum") for k, v in self._sums.items()
            }
        return dict(self._sums)

    def _log_evaluation(self, stage: str) -> None:
        if not self._sums:
            return
        sums = self._reduced()
        loss = sums["loss"] / sums["count"]
        error = 1 - sums["hits"] / sums["count"]
        centre = int(self.centre_row())
        self.log(f"{stage}/loss", loss[centre].float(), prog_bar=stage == "val")
        self.log(f"{stage}/acc", (1 - error[centre]).float(), prog_bar=stage == "val")
        self.log(f"{stage}/loss_max", loss.max().float())
        self.log(f"{stage}/error_max", error.max().float())
        if "line_loss" in sums:
            self.log(f"{stage}/line_loss_max", (sums["line_loss"] / sums["count"]).max().float())
            line_error = 1 - sums["line_hits"] / sums["count"]
            self.log(f"{stage}/line_error_max", line_error.max().float())
        self._log_extra(stage, sums)

    def _log_extra(self, stage: str, sums: dict[str, Tensor]) -> None:
        """Log further values from the reduced sums (the simplex's ensemble); nothing here."""
        del stage, sums

    def centre_row(self) -> int:
        """Return the row of `evaluation_coefficients` that is the centre."""
        rows = self.evaluation_coefficients()
        centre = self.centre_coefficients().to(rows.dtype)
        return int((rows - centre).abs().sum(dim=1).argmin())


def load_points(specs: Sequence[str], net: nn.Module, key: str) -> Tensor:
    """Load the trainable parameters of ``net`` from point specs as ``(len(specs), P)`` rows.

    Args:
        specs: files or run directories (see `lsuite.anchors.parse_spec`).
        net: the network whose parameter keys and shapes the files must fit.
        key: the config key for error messages (e.g. ``"start"``).

    Returns:
        The flat points, in the dtype and device of ``net``'s parameters.
    """
    like = {k: p.detach() for k, p in net.named_parameters() if p.requires_grad}
    rows = []
    for i, spec in enumerate(specs):
        name = key if len(specs) == 1 else f"{key}[{i}]"
        params, _ = load_point(spec, like, None, key=name)
        rows.append(torch.cat([v.reshape(-1) for v in params.values()]))
    return torch.stack(rows)
