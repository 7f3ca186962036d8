"""A LightningModule that trains any network in a random d-dimensional subspace, w = w0 + P z.

Li, Farkhoor, Liu and Yosinski 2018, "Measuring the intrinsic dimension of objective
landscapes".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call
from typing_extensions import override

from lsuite.errors import require
from lsuite.functional.params import Params
from lsuite.functional.random_projection import KINDS, Kind, RandomProjection
from lsuite.model.classifier import Classifier, OptimizerFactory, SchedulerFactory
from lsuite.model.skeleton import network_at


class RandomSubspace(Classifier):
    """Train only ``z`` (``(d,)``, from 0) of the network's weights ``w = w0 + P z``.

    ``w0`` is the built network's initial weights, kept frozen (the network's own parameters,
    ``requires_grad=False``, saved in checkpoints); ``P`` is a fixed ``(D, d)`` random map with
    unit-norm columns (`RandomProjection`: ``dense``, ``sparse`` or ``fastfood``, over the whole
    weight vector or ``per_layer``), drawn from ``seed`` on the CPU and never saved. ``D``
    counts the network's trainable parameters; buffers (BatchNorm statistics) train as usual.
    The probes measure the network at ``w0 + P z`` (`probe_network`), in all ``D`` dimensions.
    The L2 term is ``0.5 * l2 * ||w0 + P z||^2``.

    Args:
        net: the network; its parameters become ``w0``.
        optimizer: optimizer factory (it gets ``z`` only).
        num_classes: number of classes ``C``.
        scheduler: learning-rate scheduler factory, or None.
        l2: coefficient of ``0.5 * ||w||^2`` of the network's weights.
        dim: ``d``, the subspace dimension (>= 1).
        projection: ``dense`` (memory ``O(D d)``), ``sparse`` or ``fastfood`` (``O(D)``).
        per_layer: one block of ``P`` per parameter tensor (all fed the same ``z``).
        seed: seed of ``P``.

    Attributes:
        projection: the map ``(d,) -> (D,)``; any callable of that shape may replace it.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        l2: float = 0.0,
        dim: int = 1000,
        projection: Kind = "fastfood",
        per_layer: bool = False,
        seed: int = 0,
    ) -> None:
        require(isinstance(dim, int) and dim >= 1, "dim", dim, "an int >= 1")
        require(projection in KINDS, "projection", projection, f"one of {', '.join(KINDS)}")
        super().__init__(net, optimizer, num_classes, scheduler, l2)
        self.names = [n for n, p in self.net.named_parameters() if p.requires_grad]
        require(len(self.names) > 0, "net", type(net).__name__, "a network with parameters")
        for p in self.net.parameters():
            p.requires_grad_(False)
        sizes = [self.net.get_parameter(n).numel() for n in self.names]
        self.dim = dim
        self.z = nn.Parameter(torch.zeros(dim))
        self.projection: Callable[[Tensor], Tensor] = RandomProjection(
            projection, sizes, dim, seed, per_layer=per_layer
        )
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])

    def point(self) -> Params:
        """Return the network's trainable parameters ``w0 + P z`` (differentiable in ``z``)."""
        w0 = [self.net.get_parameter(name) for name in self.names]
        # one flat sum and views of it: the backward is one concatenation, not a zero-filled
        # (D,) gradient per parameter tensor
        flat = torch.cat([p.reshape(-1) for p in w0]) + self.projection(self.z)
        chunks = torch.split(flat, [p.numel() for p in w0])
        return {n: c.view_as(p) for n, c, p in zip(self.names, chunks, w0, strict=True)}

    @override
    def forward(self, inputs: Tensor) -> Tensor:
        """Return ``(B, C)`` logits of the network at ``w0 + P z``."""
        return functional_call(self.net, self.point(), (inputs,))

    @override
    def l2_penalty(self) -> Tensor:
        """Return ``0.5 * l2 * ||w0 + P z||^2`` (0 when ``l2 == 0``)."""
        if self.l2 == 0:
            return torch.zeros((), device=self.device)
        return 0.5 * self.l2 * sum(p.pow(2).sum() for p in self.point().values())

    def probe_network(self) -> nn.Module:
        """Return a copy of the network at ``w0 + P z`` (what the probes measure)."""
        with torch.no_grad():
            return network_at(self.net, self.point())
