"""A LightningModule that trains any network in a random d-dimensional subspace, w = w0 + P z.

Li, Farkhoor, Liu and Yosinski 2018, "Measuring the intrinsic dimension of objective
landscapes".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from typing_extensions import override

from lsuite.errors import require
from lsuite.functional.flat_combination import join_gradients
from lsuite.functional.params import Params
from lsuite.functional.random_projection import KINDS, Kind, RandomProjection
from lsuite.model.classifier import Classifier, OptimizerFactory, SchedulerFactory
from lsuite.model.skeleton import ParameterBinding, network_at


class RandomSubspace(Classifier):
    """Train only ``z`` (``(d,)``, from 0) of the network's weights ``w = w0 + P z``.

    ``w0`` is the built network's initial weights (or one network's weights given as
    ``init_from=``), kept frozen (the network's own parameters, ``requires_grad=False``, saved in
    checkpoints); ``P`` is a fixed ``(D, d)`` random map with
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
        self.dim = dim
        self._call = ParameterBinding(self.net, self.names)
        slots: dict[str, tuple[dict[str, Any], str]] = {}
        for table, leaf, name in self._call.slots:
            slots.setdefault(name, (table, leaf))
        self._w0_slots = [slots[n] for n in self.names]
        self._shapes = tuple(self.net.get_parameter(n).shape for n in self.names)
        self._sizes = tuple(shape.numel() for shape in self._shapes)
        self._initial: tuple[tuple[tuple[int, int], ...], Tensor] | None = None
        self.z = nn.Parameter(torch.zeros(dim))
        self.projection: Callable[[Tensor], Tensor] = RandomProjection(
            projection, list(self._sizes), dim, seed, per_layer=per_layer
        )
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])

    def point(self) -> Params:
        """Return the network's trainable parameters ``w0 + P z`` (differentiable in ``z``)."""
        w0, flat_w0 = self.initial_weights()
        if isinstance(self.projection, RandomProjection):
            # one autograd node whose backward is P^T of the concatenated gradients
            values = _Point.apply(self.z, flat_w0, self.projection, self._shapes, self._sizes)
            return dict(zip(self.names, values, strict=True))
        # any other map: one flat sum and views of it, through autograd (the backward is one
        # concatenation, not a zero-filled (D,) gradient per parameter tensor)
        chunks = torch.split(flat_w0 + self.projection(self.z), self._sizes)
        return {n: c.view(p.shape) for n, c, p in zip(self.names, chunks, w0, strict=True)}

    def initial_weights(self) -> tuple[list[Tensor], Tensor]:
        """Return ``w0``: the network's parameters (`names` order) and their ``(D,)`` concatenation.

        The concatenation is cached while every parameter is the same tensor at the same
        version (a load, a device move or any in-place change makes a new one).
        """
        w0 = [table[leaf] for table, leaf in self._w0_slots]
        key = tuple((p.data_ptr(), p._version) for p in w0)
        if self._initial is None or self._initial[0] != key:
            self._initial = (key, torch.cat([p.reshape(-1) for p in w0]))
        return w0, self._initial[1]

    @override
    def forward(self, inputs: Tensor) -> Tensor:
        """Return ``(B, C)`` logits of the network at ``w0 + P z``."""
        return self._call(self.point(), inputs)

    @override
    def l2_penalty(self) -> Tensor:
        """Return ``0.5 * l2 * ||w0 + P z||^2`` (0 when ``l2 == 0``)."""
        if self.l2 == 0:
            return torch.zeros((), device=self.device)
        return 0.5 * self.l2 * sum(p.pow(2).sum() for p in self.point().values())

    def network_state_dict(self) -> Params:
        """Return the network's state: ``w0`` and its buffers, by the network's names."""
        return dict(self.net.state_dict())

    def load_network_state_dict(self, state: Mapping[str, Tensor]) -> str:
        """Take one network's weights as ``w0`` (``init_from=``); ``z`` stays as it is (0).

        Args:
            state: the network's parameters and buffers (the keys of `network_state_dict`).

        Returns:
            What was loaded, for the log line.
        """
        with torch.no_grad():
            for name, tensor in self.net.state_dict().items():
                tensor.copy_(state[name].to(tensor.dtype))
        return "as w0 of the random subspace (z starts at 0)"

    def probe_network(self) -> nn.Module:
        """Return a copy of the network at ``w0 + P z`` (what the probes measure)."""
        with torch.no_grad():
            return network_at(self.net, self.point())


class _Point(torch.autograd.Function):
    """``w0 + P z`` viewed as the network's tensors; the gradient is ``P^T`` of theirs, joined.

    One node instead of autograd's addition, split and view per tensor (a tenth of a step on
    the digits MLP); its backward is differentiable again (`RandomProjection.transpose` is).
    """

    @staticmethod
    def forward(
        ctx: Any,
        z: Tensor,
        flat_w0: Tensor,
        projection: RandomProjection,
        shapes: tuple[torch.Size, ...],
        sizes: tuple[int, ...],
    ) -> tuple[Tensor, ...]:
        ctx.projection, ctx.sizes = projection, sizes
        ctx.set_materialize_grads(False)
        # autograd is off in here: P z without Fastfood's own node, w0 added to the fresh
        # tensor in place (one (D,) tensor fewer per step) unless it promotes the dtype
        delta = projection(z, node=False)
        same = delta.dtype == torch.promote_types(delta.dtype, flat_w0.dtype)
        chunks = torch.split(delta.add_(flat_w0) if same else flat_w0 + delta, sizes)
        return tuple(c.view(shape) for c, shape in zip(chunks, shapes, strict=True))

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple:
        flat = join_gradients(grads, ctx.sizes)
        if flat is None:
            return None, None, None, None, None
        # create_graph: the gradient must be differentiable again (through Fastfood's node)
        return ctx.projection.transpose(flat, node=torch.is_grad_enabled()), None, None, None, None
