"""A LightningModule that trains the free vertices of a simplex whose other vertices are frozen."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsuite.errors import require
from lsuite.functional.curves import dirichlet_coordinates, simplex_grid
from lsuite.functional.params import Params
from lsuite.functional.simplex_volume import simplex_log_volume
from lsuite.model.classifier import OptimizerFactory, SchedulerFactory
from lsuite.model.point_combination import PointCombination, load_points


class SimplexModule(PointCombination):
    """Train ``free_vertices`` vertices of a simplex spanned with frozen trained networks (SPRO).

    Benton, Maddox, Lotfi, Wilson 2021, "Loss Surface Simplexes for Mode Connecting Volumes and
    Fast Ensembling". The fixed vertices are trained networks given as point specs
    (``vertices``); the free ones start at the fixed vertices' centroid plus a random offset of
    relative size ``init_scale`` and are trained: each batch draws barycentric coordinates from
    Dirichlet(1, ..., 1) (uniform over the simplex, a generator seeded with ``seed``) and takes
    the loss of the network there, minus ``volume_weight`` times the log-volume of the simplex
    (`lsuite.functional.simplex_volume.simplex_log_volume`), which pushes the free vertices out.

    Validation and test evaluate the barycentric grid of ``eval_resolution`` steps per edge plus
    the centroid: ``val/loss`` / ``val/acc`` are the centroid's, ``val/loss_max`` /
    ``val/error_max`` the largest over the grid; test also logs ESPRO's ensemble
    (``ensemble_size`` points drawn from the simplex with a fixed seed, the mean of their
    softmax): ``test/ensemble_loss`` (NLL) and ``test/ensemble_acc``. ``probe_network()`` is the
    network at the centroid.

    Args:
        net: the network (its architecture; its initial weights are unused).
        optimizer: optimizer factory, called with the free vertices.
        num_classes: classes ``C``.
        scheduler: learning-rate scheduler factory or None.
        l2: coefficient of ``0.5 * ||free vertices||^2`` (>= 0).
        vertices: point specs of the fixed vertices (at least one).
        free_vertices: trained vertices ``k >= 1``.
        volume_weight: coefficient of the log-volume subtracted from the loss (>= 0).
        init_scale: size of the free vertices' initial offset relative to the fixed vertices'
            mean distance from their centroid (their norm for a single vertex), > 0.
        seed: seed of the coordinate draws and of the initial offsets.
        eval_resolution: steps per edge of the evaluation grid (>= 1).
        ensemble_size: simplex points in the test ensemble (>= 1).
        bn_batches: training batches for BatchNorm statistics at every evaluated point.

    Raises:
        ConfigError: for missing vertices or an argument out of range.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        l2: float = 0.0,
        vertices: Sequence[str] | None = None,
        free_vertices: int = 1,
        volume_weight: float = 0.01,
        init_scale: float = 0.1,
        seed: int = 0,
        eval_resolution: int = 2,
        ensemble_size: int = 8,
        bn_batches: int = 4,
    ) -> None:
        specs = [str(v) for v in vertices] if vertices is not None else []
        require(
            len(specs) >= 1 and all(specs),
            "vertices",
            vertices,
            "a list of point specs of trained networks, e.g. module.vertices=[RUN_A,RUN_B]",
        )
        for key, value, low in (
            ("free_vertices", free_vertices, 1),
            ("eval_resolution", eval_resolution, 1),
            ("ensemble_size", ensemble_size, 1),
        ):
            require(
                isinstance(value, int) and not isinstance(value, bool) and value >= low,
                key,
                value,
                f"an int >= {low}",
            )
        require(volume_weight >= 0, "volume_weight", volume_weight, "a float >= 0")
        require(init_scale > 0, "init_scale", init_scale, "a float > 0")
        fixed = load_points(specs, net, "vertices")
        free = _initial_free(fixed, free_vertices, float(init_scale), int(seed))
        order = [("fixed", i) for i in range(len(specs))]
        order += [("free", j) for j in range(free_vertices)]
        self.vertices = specs
        self.num_vertices = len(order)
        self.volume_weight = float(volume_weight)
        self.ensemble_size = ensemble_size
        super().__init__(
            net,
            optimizer,
            num_classes,
            scheduler,
            l2,
            fixed=fixed,
            free=free,
            order=order,
            kind="simplex",
            seed=seed,
            bn_batches=bn_batches,
        )
        centroid = self.centre_coefficients().unsqueeze(0)
        self._evaluation = torch.cat([simplex_grid(self.num_vertices, eval_resolution), centroid])
        ensemble_generator = torch.Generator().manual_seed(int(seed) + 1)
        self._ensemble = dirichlet_coordinates(
            self.num_vertices, ensemble_size, ensemble_generator, torch.float64
        )
        self._ensemble_buffers: list[Params] | None = None

    def sample_coefficients(self) -> Tensor:
        """Return ``(V,)`` barycentric coordinates drawn from Dirichlet(1)."""
        return dirichlet_coordinates(self.num_vertices, 1, self.generator, torch.float64)[0]

    def centre_coefficients(self) -> Tensor:
        """Return the centroid's ``(V,)`` coordinates ``1 / V``."""
        return torch.full((self.num_vertices,), 1.0 / self.num_vertices, dtype=torch.float64)

    def evaluation_coefficients(self) -> Tensor:
        """Return the ``(N, V)`` evaluation grid (the centroid last)."""
        return self._evaluation

    def reference_coefficients(self) -> Tensor | None:
        """Return the grid rows on the face of the fixed vertices (None for a single one)."""
        fixed = len(self.vertices)
        if fixed < 2:
            return None
        grid = self._evaluation[:-1]
        return grid[grid[:, fixed:].sum(dim=1) == 0]

    def log_volume(self) -> Tensor:
        """Return the log-volume of the simplex (differentiable in the free vertices)."""
        rows = torch.cat([self.fixed_points.to(self.free_points.dtype), self.free_points])
        return simplex_log_volume(rows)

    def regulariser(self) -> Tensor:
        """Return ``-volume_weight * log_volume`` (logged as ``train/log_volume``)."""
        log_volume = self.log_volume()
        if self._trainer is not None:
            self.log("train/log_volume", log_volume.detach(), on_step=True, on_epoch=True)
        return -self.volume_weight * log_volume

    def on_test_epoch_start(self) -> None:
        """Reset the sums; recompute BatchNorm statistics at the grid and the ensemble's points."""
        super().on_test_epoch_start()
        self._ensemble_buffers = None
        if self._has_batch_norm:
            self._ensemble_buffers = self.recomputed_buffers(self._ensemble)

    def on_validation_epoch_start(self) -> None:
        """Reset the sums (no ensemble at validation)."""
        super().on_validation_epoch_start()
        self._ensemble_buffers = None

    def _extra_accumulate(self, inputs: Tensor, targets: Tensor) -> None:
        if not self.trainer.testing:
            return
        probabilities = torch.zeros((), device=inputs.device)
        for i, c in enumerate(self._ensemble):
            buffers = None if self._ensemble_buffers is None else self._ensemble_buffers[i]
            probabilities = probabilities + F.softmax(self.forward_at(c, inputs, buffers), -1)
        probabilities = probabilities / len(self._ensemble)
        picked = probabilities.gather(1, targets.unsqueeze(1)).squeeze(1)
        nll = -torch.log(picked.clamp_min(torch.finfo(picked.dtype).tiny)).sum()
        self._add("ensemble_nll", nll.double())
        self._add("ensemble_hits", (probabilities.argmax(-1) == targets).sum().double())

    def _log_extra(self, stage: str, sums: dict[str, Any]) -> None:
        if "ensemble_nll" in sums:
            self.log(f"{stage}/ensemble_loss", (sums["ensemble_nll"] / sums["count"]).float())
            self.log(f"{stage}/ensemble_acc", (sums["ensemble_hits"] / sums["count"]).float())


def _initial_free(fixed: Tensor, count: int, scale: float, seed: int) -> Tensor:
    """Return ``(count, P)`` points at the centroid of ``fixed`` plus random offsets."""
    centroid = fixed.mean(dim=0)
    if fixed.shape[0] > 1:
        size = float((fixed - centroid).norm(dim=1).mean())
    else:
        size = float(centroid.norm())
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.randn(count, fixed.shape[1], generator=generator, dtype=torch.float64)
    offsets = offsets / offsets.norm(dim=1, keepdim=True) * (scale * max(size, 1e-12))
    return centroid.unsqueeze(0) + offsets.to(fixed.dtype)
