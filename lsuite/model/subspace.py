"""A LightningModule that trains a line or simplex of networks from scratch in one run.

Wortsman, Horton, Guestrin, Farhadi and Rastegari 2021, "Learning neural network subspaces".
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from lsuite.errors import ConfigError, require
from lsuite.functional.params import Params
from lsuite.functional.simplex_draws import sample_simplex as sample_simplex  # re-exported
from lsuite.functional.simplex_draws import sample_simplex_point
from lsuite.functional.vertex_combination import combine_vertices, cosine_squared
from lsuite.functional.vertex_layout import shuffled_vertices, vertex_columns
from lsuite.model.classifier import Classifier, OptimizerFactory, SchedulerFactory
from lsuite.model.point_batch_norm import (
    first_training_batches,
    has_batch_norm,
    recompute_batch_norm,
)
from lsuite.model.skeleton import ParameterBinding, network_at, strip_parameters
from lsuite.model.subspace_evaluation import EVALUATION_FILE as EVALUATION_FILE  # re-exported
from lsuite.model.subspace_evaluation import evaluation_points as evaluation_points  # re-exported
from lsuite.model.subspace_walk import publish_walk, walk_subspace


class Subspace(Classifier):
    """Train a line (2 endpoints) or simplex (``num_vertices``) of networks in one run.

    Every vertex is a full set of the network's parameters; vertex 0 starts at the built
    network's weights and each other vertex at an independent draw (each tensor's entries
    randomly permuted: a fresh draw of any elementwise i.i.d. initialisation); with
    ``init_from=`` one network's weights (a state dict or a `Classifier` checkpoint), vertex 0
    starts at them and the others keep their draws (`load_network_state_dict`). Each training
    batch is evaluated at a random point of the simplex (uniform, from a generator seeded with
    ``seed``; one point per layer with ``layerwise``) with the point's tensors put into the
    network's parameter slots (`lsuite.model.skeleton.ParameterBinding`, what
    ``torch.func.functional_call`` does, set up once), and ``beta * cos^2`` between two vertices
    (the pair drawn with the point) is added to the loss. The point and the cosine are one
    autograd node (`lsuite.functional.vertex_combination.combine_vertices`).
    Validation and test run at the midpoint (the centre), which is also the network the probes
    measure (`probe_network`). At the end of fitting the validation loss and accuracy are
    evaluated along the line (or at the vertices, edge midpoints and centre) and logged as
    ``subspace/<point>/val_loss`` and ``.../val_acc`` and written to ``<run_dir>/subspace.json``.

    The vertices are two parameters, ``weight_vertices`` ``(K, P_w)`` (the tensors of two or
    more dimensions, flattened in `weight_names` order) and ``other_vertices`` ``(K, P - P_w)``
    (the rest); `stacked` gives them per parameter name. The network itself is a skeleton
    without parameters (`lsuite.model.skeleton.strip_parameters`); it keeps its buffers.
    BatchNorm: training updates one set of running statistics, shared by all points (updated at
    the sampled points); with BatchNorm layers, validation and test at the midpoint and the
    evaluation along the subspace at the end of fitting recompute the statistics at each
    evaluated point on the first ``bn_batches`` training batches (this rank's; the equal-weight
    mean of their batch statistics, as Wortsman et al. do; `lsuite.model.point_batch_norm`),
    and ``subspace.json`` says so (``"batch_norm": "recomputed"``, else ``"none"``). The probes
    measure `probe_network`, with the shared statistics.
    Logged besides `Classifier`'s: ``train/cosine`` (the cosine of the regularised pair).

    Args:
        net: the network (its parameters move into the vertices).
        optimizer: optimizer factory.
        num_classes: number of classes ``C``.
        scheduler: learning-rate scheduler factory, or None.
        l2: coefficient of ``0.5 * ||w||^2`` of the sampled point's weights.
        num_vertices: ``K``, 2 for a line (>= 2).
        beta: coefficient of the cosine-similarity regulariser (>= 0; Wortsman et al.'s 1).
        layerwise: draw an independent point for every layer (module) instead of one.
        seed: seed of the point and pair draws.
        eval_points: values of alpha evaluated along a line at the end of fitting (>= 2).
        bn_batches: training batches for BatchNorm statistics at each evaluated point (>= 1;
            unused without BatchNorm).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        l2: float = 0.0,
        num_vertices: int = 2,
        beta: float = 1.0,
        layerwise: bool = False,
        seed: int = 0,
        eval_points: int = 11,
        bn_batches: int = 4,
    ) -> None:
        require(
            isinstance(num_vertices, int) and num_vertices >= 2,
            "num_vertices",
            num_vertices,
            "an int >= 2 (2: a line)",
        )
        require(beta >= 0, "beta", beta, "a float >= 0")
        require(
            isinstance(eval_points, int) and eval_points >= 2, "eval_points", eval_points, ">= 2"
        )
        require(
            isinstance(bn_batches, int) and not isinstance(bn_batches, bool) and bn_batches >= 1,
            "bn_batches",
            bn_batches,
            "an int >= 1",
        )
        super().__init__(net, optimizer, num_classes, scheduler, l2)
        self.num_vertices = num_vertices
        self.beta = float(beta)
        self.layerwise = bool(layerwise)
        self.eval_points = eval_points
        self.bn_batches = bn_batches
        self._has_batch_norm = has_batch_norm(self.net)
        self._fit_loader: Any = None
        self._eval_buffers: Params | None = None  # the midpoint's, during validation and test
        self._call = ParameterBinding(self.net)
        base = strip_parameters(self.net)
        require(len(base) > 0, "net", type(net).__name__, "a network with parameters")
        # Vertices flattened into rows, the weights (those the regulariser sees) first.
        columns = vertex_columns({n: p.shape for n, p in base.items()}, self.layerwise)
        self.names, self.weight_names = list(columns.names), columns.weight_names
        self._like = {n: torch.empty(columns.shapes[n], device="meta") for n in self.names}
        self._slices, self._num_weights = columns.slices, columns.num_weights
        self.groups, self.num_groups = columns.groups, columns.num_groups
        self._layouts = {g: columns.layout(g) for g in {1, self.num_groups}}
        initial = shuffled_vertices(base, self.names, num_vertices)
        # Two parameters, so the regulariser reads a whole tensor (a slice's backward costs a
        # copy of all vertices): the weights' (K, P_w) and the rest's (K, P - P_w).
        self.weight_vertices = nn.Parameter(initial[:, : self._num_weights].clone())
        self.other_vertices = nn.Parameter(initial[:, self._num_weights :].clone())
        # torch's Mersenne Twister seeded with a small int gives correlated first draws (seed 0:
        # 18 of the first 22 alphas above 0.5); Python's seeding scrambles the seed first.
        self.generator = torch.Generator().manual_seed(random.Random(int(seed)).getrandbits(63))
        self.evaluation: list[dict[str, Any]] = []
        self._draw: tuple[Tensor | list[float], tuple[int, int]] | None = None
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])

    @property
    def vertices(self) -> Tensor:
        """The ``(K, P)`` vertices, rows flattened in the order of `names` (a copy)."""
        return torch.cat([self.weight_vertices, self.other_vertices], dim=1)

    def stacked(self) -> dict[str, Tensor]:
        """Return the vertices, ``(K, *shape)`` views per parameter name of the network."""
        k, vertices = self.num_vertices, self.vertices
        return {
            n: vertices[:, a:b].view(k, *self._like[n].shape) for n, (a, b) in self._slices.items()
        }

    def point(self, weights: Tensor) -> Params:
        """Return the network's parameters at ``(G, K)`` (or ``(K,)``) barycentric ``weights``."""
        return self._combine(weights)[0]

    def _combine(
        self, weights: Tensor | list[float], pair: tuple[int, int] | None = None
    ) -> tuple[Params, tuple[Tensor, Tensor] | None]:
        """Return the parameters at ``weights`` and, for a ``pair``, its ``(cos^2, cos)``."""
        if isinstance(weights, list):  # one point's K floats (a training draw)
            layout = self._layouts[1]
            return combine_vertices(
                self.weight_vertices, self.other_vertices, weights, layout, pair
            )
        weights = weights.reshape(-1, self.num_vertices).to(self.weight_vertices)
        layout = self._layouts.get(weights.shape[0])
        if layout is None:  # not require(): its message would be formatted at every step
            raise ConfigError(
                f"weights: got shape {tuple(weights.shape)}; expected (K,) or (G, K) with "
                f"G = 1 or {self.num_groups} (one row per layer)"
            )
        return combine_vertices(self.weight_vertices, self.other_vertices, weights, layout, pair)

    def cosine(self, i: int, j: int) -> tuple[Tensor, Tensor]:
        """Return ``cos^2`` and ``cos`` between the weights of vertices ``i`` and ``j``."""
        return cosine_squared(self.weight_vertices, i, j)

    def midpoint(self) -> Params:
        """Return the parameters at the centre (the midpoint of a line)."""
        return self.point(torch.full((self.num_vertices,), 1.0 / self.num_vertices))

    @override
    def forward(self, inputs: Tensor) -> Tensor:
        """Return ``(B, C)`` logits of the network at the midpoint.

        During validation and test of a network with BatchNorm, with the statistics recomputed at
        the midpoint; otherwise with the shared ones.
        """
        return self.forward_at(self.midpoint(), inputs, self._eval_buffers)

    def forward_at(self, params: Params, inputs: Tensor, buffers: Params | None = None) -> Tensor:
        """Return ``(B, C)`` logits of the network with ``params`` (and ``buffers`` if given).

        Args:
            params: a tensor for every parameter name (`point`'s output).
            inputs: ``(B, ...)`` inputs.
            buffers: the network's buffers to use (recomputed BatchNorm statistics), or None
                for its own.

        Returns:
            The logits.
        """
        return self._call(params, inputs, buffers=buffers)

    def batch_norm_at(self, points: list[Tensor]) -> list[Params]:
        """Return the network's buffers with BatchNorm statistics recomputed at each point.

        Args:
            points: ``(K,)`` (or ``(G, K)``) barycentric weights of each point.

        Returns:
            One dict of the network's buffers per point, from the first `bn_batches` training
            batches of this rank.
        """
        batches = first_training_batches(self, self.bn_batches, self._fit_loader)
        return recompute_batch_norm(self.net, batches, [self.point(w) for w in points])

    @override
    def on_train_start(self) -> None:
        """Keep the training loader of fit (a ``trainer.test`` after it recomputes BatchNorm)."""
        self._fit_loader = self.trainer.train_dataloader

    @override
    def on_validation_epoch_start(self) -> None:
        """Recompute BatchNorm statistics at the midpoint (networks with BatchNorm)."""
        self._start_evaluation()

    @override
    def on_test_epoch_start(self) -> None:
        """Recompute BatchNorm statistics at the midpoint (networks with BatchNorm)."""
        self._start_evaluation()

    @override
    def on_validation_epoch_end(self) -> None:
        """Go back to the shared BatchNorm statistics."""
        self._eval_buffers = None

    @override
    def on_test_epoch_end(self) -> None:
        """Go back to the shared BatchNorm statistics."""
        self._eval_buffers = None

    def _start_evaluation(self) -> None:
        if self._has_batch_norm:
            centre = torch.full((self.num_vertices,), 1.0 / self.num_vertices)
            with torch.no_grad():
                self._eval_buffers = self.batch_norm_at([centre])[0]

    def network_state_dict(self) -> Params:
        """Return vertex 0's parameters and the network's buffers, by the network's names."""
        stacked = self.stacked()
        params = {n: stacked[n][0].detach().clone() for n in self.names}
        return {**params, **{n: b.detach() for n, b in self.net.named_buffers()}}

    def load_network_state_dict(self, state: Mapping[str, Tensor]) -> str:
        """Start vertex 0 at one network's weights (``init_from=``); the others keep theirs.

        The other vertices keep their independent draws (Wortsman et al. start every vertex
        independently; starting them all at one network would make the line a point). The
        network's buffers (BatchNorm statistics) are loaded too.

        Args:
            state: the network's parameters and buffers (the keys of `network_state_dict`).

        Returns:
            What was loaded, for the log line.
        """
        with torch.no_grad():
            flat = torch.cat([state[n].reshape(-1) for n in self.names])
            flat = flat.to(self.weight_vertices)
            self.weight_vertices[0].copy_(flat[: self._num_weights])
            self.other_vertices[0].copy_(flat[self._num_weights :])
            for name, buffer in self.net.named_buffers():
                buffer.copy_(state[name].to(buffer.dtype))
        return (
            "into vertex 0 of the subspace; the other vertices keep their independent draws "
            "(Wortsman et al. start the vertices independently)"
        )

    def probe_network(self) -> nn.Module:
        """Return a copy of the network at the midpoint (what the probes measure)."""
        return network_at(self.net, {n: p.detach() for n, p in self.midpoint().items()})

    def _next_draw(self) -> tuple[Tensor | list[float], tuple[int, int]]:
        # one point: Python floats (the same draws, no tensor operations in the step)
        weights = (
            sample_simplex(self.num_vertices, self.num_groups, self.generator)
            if self.layerwise
            else sample_simplex_point(self.num_vertices, self.generator)
        )
        if self.num_vertices == 2:
            return weights, (0, 1)
        pair = torch.randperm(self.num_vertices, generator=self.generator)[:2].tolist()
        return weights, (int(pair[0]), int(pair[1]))

    @override
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Return the objective at a random point of the subspace, plus the regulariser."""
        del batch_idx
        first_pass = self.should_log_training_step()
        if first_pass or self._draw is None:  # a SAM second pass reuses the first's point
            self._draw = self._next_draw()
        weights, (i, j) = self._draw
        inputs, targets = batch[0], batch[1]
        # the point and the pair's cosine in one autograd node (the cosine's gradient is
        # skipped when beta is 0: nothing then depends on it)
        params, (cos2, cosine) = self._combine(weights, (i, j))
        logits = self._call(params, inputs)
        loss = F.cross_entropy(logits, targets)
        objective = loss
        if self.l2 > 0:
            objective = objective + 0.5 * self.l2 * sum(p.pow(2).sum() for p in params.values())
        if self.beta > 0:
            objective = objective + self.beta * cos2
        if first_pass:
            # update, not forward: train/acc is logged per epoch, and forward's per-batch value
            # (a second state update and compute) costs more than an MLP's step on a CPU
            self.train_acc.update(logits.detach(), targets)
            sync = {"on_step": True, "on_epoch": True, "sync_dist": True}
            self.log("train/loss", loss.detach(), prog_bar=True, **sync)
            self.log("train/objective", objective.detach(), **sync)
            self.log("train/cosine", cosine.detach(), **sync)
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return objective

    @override
    def l2_penalty(self) -> Tensor:
        """Return ``0.5 * l2 * ||w||^2`` of the midpoint's weights."""
        if self.l2 == 0:
            return torch.zeros((), device=self.device)
        return 0.5 * self.l2 * sum(p.pow(2).sum() for p in self.midpoint().values())

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the state of the point generator, so a resumed run draws the same points."""
        checkpoint["subspace_generator"] = self.generator.get_state()

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the point generator's state."""
        state = checkpoint.get("subspace_generator")
        if state is not None:
            self.generator.set_state(state)

    @override
    def on_train_end(self) -> None:
        """Evaluate the validation data along the subspace; log and write the results."""
        loaders = self.trainer.val_dataloaders
        if loaders is None:
            return
        self.evaluation = walk_subspace(self, loaders)
        publish_walk(self, self.evaluation)
        self.trainer.strategy.barrier()
