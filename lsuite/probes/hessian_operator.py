"""The Hessian of the mean probe loss as a matrix-free operator on flattened parameters.

The selected parameters form one flat ``(P,)`` leaf whose split views feed the stateless forward,
so gradients and products come out flat with no per-tensor bookkeeping. Engines (``engine=``), all
exact to rounding:

- ``"reuse"`` (default): one forward and one ``create_graph`` backward over every local batch
  build the gradient graph once; each product is then one double backward
  ``torch.autograd.grad(grad, flat, v, retain_graph=True)``. `HessianOperator.matmat` loops over
  rows on the CPU and uses one batched call (``is_grads_batched=True``) on accelerators.
  Memory: the graphs of all local batches stay alive for the operator's lifetime.
- ``"recompute"``: rebuilds the graph of each batch for every product (forward, ``create_graph``
  backward, double backward) and frees it: the memory of one batch's graph.
- ``"forward_over_reverse"``: ``torch.func.jvp`` of ``torch.func.grad`` per batch, ``vmap`` over
  the rows of `HessianOperator.matmat`; nothing is kept between products.

Choice of the default, measured with ``scripts/bench_hessian.py --threads 1`` on the project's
2-core CPU machine shared with other jobs (torch 2.13; one product in units of one forward +
backward of the same batch, medians of interleaved repeats in shuffled order):

=========================================  =================  ====================
engine                                     MLP 64-128-128-10  ResNet-20, BatchNorm
=========================================  =================  ====================
``reuse`` matvec (default)                 1.5-1.7            2.4-2.5
``reuse`` matmat, batched, per vector      1.7-2.2 (K=8)      2.8 (K=2)
``recompute`` matvec                       2.8-3.3            3.7-3.8
``forward_over_reverse`` matvec            4.9-6.0            4.2
``forward_over_reverse`` vmap, per vector  2.0-2.3 (K=8)      -
PyHessian (same graph reuse), for scale    1.5-1.6            2.6
=========================================  =================  ====================

``reuse`` is therefore the default, and ``matmat`` loops on the CPU (batched double backward
only wins there on tiny models, e.g. 0.5 vs 0.9 gradients per vector at P = 1,482). No GPU was
available to measure: on accelerators ``matmat`` batches by default (``batched=`` overrides), and
``forward_over_reverse`` is the engine to try when memory for the kept graphs is short.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

from lsuite.errors import require
from lsuite.functional.params import Params, clone, flatten, numel, unflatten
from lsuite.probes.data_source import DataSource
from lsuite.probes.point import ModelPoint
from lsuite.probes.progress import progress_advance

Engine = Literal["reuse", "recompute", "forward_over_reverse"]

_ENGINES = ("reuse", "recompute", "forward_over_reverse")


_F = TypeVar("_F", bound=Callable[..., Any])


def _in_point_context(method: _F) -> _F:
    """Run ``method`` inside the point's context: no autocast, the math SDPA kernel.

    The forward alone is not enough: the gradient graph that Hessian-vector products
    differentiate is recorded by the backward, which autocast would otherwise put in low
    precision.

    Returns:
        The wrapped method.
    """

    @functools.wraps(method)
    def wrapped(self: HessianOperator, *args: Any, **kwargs: Any) -> Any:
        with self.point.context():
            return method(self, *args, **kwargs)

    return wrapped  # type: ignore[return-value]


class HessianOperator:
    """The Hessian ``H`` of the mean probe loss w.r.t. the (selected) trainable parameters.

    The loss is the sample-weighted mean over every probe batch of every rank,
    ``L = sum_b (n_b / N) L_b``; every product is summed across ranks with ``source.sum``, so all
    ranks hold the same result. Vectors are flattened in the key order of ``point.params``
    (restricted to ``param_names``), ``P`` entries; parameters not selected are held fixed. The
    point itself is never modified (BatchNorm updates in ``bn_mode="train"`` land on a copy).

    Args:
        point: the frozen model.
        source: the probe batches of this rank.
        param_names: parameters spanning the Hessian, a subset of ``point.params``; all when None.
        engine: how products are computed: ``"reuse"`` (default), ``"recompute"`` or
            ``"forward_over_reverse"`` (see the module docstring for costs).
        batched: for ``engine="reuse"``, whether `matmat` multiplies all rows in one batched
            double backward (``is_grads_batched=True``) rather than one row at a time; None
            (default) batches on accelerators and loops on the CPU, where looping was faster.

    Attributes:
        size: number of entries ``P`` of a vector.
        dtype: dtype of vectors (that of the parameters).
        device: device of vectors.
        num_matvecs: Hessian-vector products so far (a `matmat` of ``K`` rows counts ``K``).

    Raises:
        ConfigError: for unknown, repeated or empty ``param_names``, an unknown ``engine``, or
            ``forward_over_reverse`` with ``bn_mode="train"``.
    """

    def __init__(
        self,
        point: ModelPoint,
        source: DataSource,
        *,
        param_names: Sequence[str] | None = None,
        engine: Engine = "reuse",
        batched: bool | None = None,
    ) -> None:
        names = list(point.params) if param_names is None else list(param_names)
        unknown = [n for n in names if n not in point.params]
        require(
            not unknown,
            "param_names",
            unknown,
            f"names of trainable parameters, some of {list(point.params)[:8]}",
        )
        require(len(names) > 0, "param_names", names, "at least one parameter name")
        require(len(set(names)) == len(names), "param_names", names, "names without repeats")
        require(engine in _ENGINES, "engine", engine, f"one of {list(_ENGINES)}")
        require(batched in (None, True, False), "batched", batched, "true, false or null")
        require(
            not (engine == "forward_over_reverse" and point.bn_mode == "train"),
            "engine",
            engine,
            "'reuse' or 'recompute' for bn_mode='train' (torch.func cannot update BatchNorm "
            "running statistics in place)",
        )
        # Keep the point's key order so that flattening matches `functional.params.flatten`.
        chosen = set(names)
        self.names = [k for k in point.params if k in chosen]
        self.point = point
        self.source = source
        self.engine: Engine = engine
        self._like = {k: point.params[k] for k in self.names}
        self._fixed = {k: v for k, v in point.params.items() if k not in chosen}
        self._buffers = clone(point.buffers) if point.bn_mode == "train" else point.buffers
        self.size = numel(self._like)
        self._sizes = [v.numel() for v in self._like.values()]
        self._shapes = [v.shape for v in self._like.values()]
        self.dtype = point.dtype
        self.device = point.device
        self.num_matvecs = 0
        self._graph: _Graph | None = None
        self._batched = batched if batched is not None else self.device.type != "cpu"

    @_in_point_context
    def matvec(self, v: Tensor) -> Tensor:
        """Return ``H v``.

        Args:
            v: vector of shape ``(P,)``, on the operator's device and dtype.

        Returns:
            ``H v``, shape ``(P,)``, identical on every rank.
        """
        if self.engine != "reuse" or len(self.source) == 0:
            return self.matmat(v.unsqueeze(0)).squeeze(0)
        local = self._reused_graph().hvp(v.to(device=self.device, dtype=self.dtype))
        self.num_matvecs += 1
        progress_advance(1)
        return self.source.sum(local)

    @_in_point_context
    def matmat(self, vectors: Tensor) -> Tensor:
        """Return ``V H`` for row vectors ``V`` (``H`` is symmetric: row ``i`` is ``H v_i``).

        Args:
            vectors: ``(K, P)`` rows ``v_i``.

        Returns:
            ``(K, P)`` rows ``H v_i``, identical on every rank.
        """
        vectors = vectors.to(device=self.device, dtype=self.dtype)
        if len(self.source) == 0:
            local = torch.zeros_like(vectors)
        elif self.engine == "reuse":
            local = self._matmat_reuse(vectors)
        elif self.engine == "recompute":
            local = torch.stack([self._hvp_recompute(v) for v in vectors])
        else:
            local = self._matmat_functional(vectors)
        self.num_matvecs += vectors.shape[0]
        progress_advance(vectors.shape[0])
        return self.source.sum(local)

    def to_params(self, vector: Tensor) -> Params:
        """Return a ``(P,)`` vector as a dict keyed and shaped like the selected parameters."""
        return unflatten(vector, self._like)

    @property
    def block_sizes(self) -> list[int]:
        """Entries of each selected parameter tensor, in key order (they sum to ``P``)."""
        return list(self._sizes)

    @_in_point_context
    def gradient(self) -> Tensor:
        """Return the gradient of the mean loss, shape ``(P,)``, identical on every rank."""
        if len(self.source) == 0:
            local = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        elif self.engine == "reuse":
            local = self._reused_graph().grad.detach()
        else:
            with _grad_mode():
                flat = self._flat_leaf()
                local = _gradient(self._mean_loss(self._unflatten_leaf(flat)), flat, False)
        return self.source.sum(local)

    @_in_point_context
    def loss(self) -> float:
        """Return the mean probe loss over all batches of all ranks."""
        if len(self.source) == 0:
            local = torch.zeros((), dtype=self.dtype, device=self.device)
        elif self.engine == "reuse":
            local = self._reused_graph().loss
        else:
            with torch.no_grad():
                local = self._mean_loss(self._like)
        return float(self.source.sum(local.detach()).item())

    def _flat_leaf(self) -> Tensor:
        """Return the selected parameters as one ``(P,)`` leaf that requires grad."""
        return flatten(self._like).detach().clone().requires_grad_(True)

    def _unflatten_leaf(self, flat: Tensor) -> Params:
        # Views through one split: its backward is a single concatenation, so gradients and
        # Hessian-vector products come out flat, without Python-side splitting or copying.
        parts = flat.split(self._sizes)
        return {
            k: t.view(shape) for k, t, shape in zip(self.names, parts, self._shapes, strict=True)
        }

    def _batch_loss(self, inputs: object, targets: Tensor, params: Params) -> Tensor:
        outputs = self.point.outputs(inputs, {**self._fixed, **params}, self._buffers)
        return self.point.criterion(outputs, targets)

    def _mean_loss(self, params: Params) -> Tensor:
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        for (inputs, targets), weight in self.source.weights():
            total = total + weight * self._batch_loss(inputs, targets, params)
        return total

    def _reused_graph(self) -> _Graph:
        if self._graph is None:
            with _grad_mode():
                flat = self._flat_leaf()
                self._graph = _Graph.build(self._mean_loss(self._unflatten_leaf(flat)), flat)
        return self._graph

    def _matmat_reuse(self, vectors: Tensor) -> Tensor:
        graph = self._reused_graph()
        if vectors.shape[0] > 1 and self._batched:
            try:
                return graph.hvp(vectors)
            except RuntimeError:
                # Some ops lack a batching rule for their double backward; loop instead.
                self._batched = False
        return torch.stack([graph.hvp(v) for v in vectors])

    def _hvp_recompute(self, v: Tensor) -> Tensor:
        total = torch.zeros_like(v)
        for (inputs, targets), weight in self.source.weights():
            with _grad_mode():
                flat = self._flat_leaf()
                loss = self._batch_loss(inputs, targets, self._unflatten_leaf(flat))
                hv = _Graph.build(loss, flat).hvp(v, retain_graph=False)
            total = total + weight * hv
        return total

    def _matmat_functional(self, vectors: Tensor) -> Tensor:
        total = torch.zeros_like(vectors)
        for (inputs, targets), weight in self.source.weights():

            def loss(params: Params, inputs: object = inputs, targets: Tensor = targets) -> Tensor:
                return self._batch_loss(inputs, targets, params)

            def hvp(v: Tensor, loss: object = loss) -> Tensor:
                _, out = jvp(grad(loss), (self._like,), (unflatten(v, self._like),))
                return flatten(out)

            with _grad_mode():
                total = total + weight * vmap(hvp, randomness="same")(vectors)
        return total.detach()


@dataclass(frozen=True)
class _Graph:
    """The mean loss and its gradient (with graph) w.r.t. one flat ``(P,)`` parameter leaf."""

    flat: Tensor
    grad: Tensor
    loss: Tensor

    @staticmethod
    def build(loss: Tensor, flat: Tensor) -> _Graph:
        return _Graph(flat, _gradient(loss, flat, True), loss.detach())

    def hvp(self, vectors: Tensor, retain_graph: bool = True) -> Tensor:
        """Return ``H v`` for ``(P,)`` ``vectors``, or the rows ``H v_i`` for ``(K, P)``."""
        if not self.grad.requires_grad:
            # The gradient does not depend on the parameters: the Hessian is zero.
            return torch.zeros_like(vectors)
        (hv,) = torch.autograd.grad(
            self.grad,
            self.flat,
            grad_outputs=vectors,
            retain_graph=retain_graph,
            allow_unused=True,
            materialize_grads=True,
            is_grads_batched=vectors.ndim == 2,
        )
        return hv


@contextmanager
def _grad_mode() -> Iterator[None]:
    """Enable autograd, also inside ``torch.no_grad`` or ``torch.inference_mode`` callers."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def _gradient(loss: Tensor, flat: Tensor, create_graph: bool) -> Tensor:
    (out,) = torch.autograd.grad(
        loss, flat, create_graph=create_graph, allow_unused=True, materialize_grads=True
    )
    return out
