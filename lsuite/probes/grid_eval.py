"""Evaluate the mean loss and accuracy at many points in weight space (grids, lines, samples).

Points are flat ``(P,)`` parameter vectors in the key order of ``point.params`` (see
`lsuite.functional.params.flatten`). A family of points is either affine,
``base + coefficients @ directions`` (`AffinePoints`: lines, planes, random samples), or a
straight segment evaluated with ``torch.lerp`` (`SegmentPoints`: exact at both ends). Nothing is
deep-copied per point and the model is never touched; every point goes through the point's
stateless skeleton, in one of two ways:

- ``"loop"``: one work vector is rewritten in place for each point (one or two fused adds); the
  skeleton's parameter slots hold views into it for the whole grid (``functional_call``'s
  re-parametrisation, done once per grid instead of once per forward; restored afterwards);
- ``"vmap"``: ``torch.func.vmap`` over a chunk of ``K`` points, whose ``(K, P)`` parameters are
  built by one ``addmm`` (or ``lerp``).

Rule for ``batching="auto"``: the loop, unless (1) every module that owns parameters is a
linear, convolution, embedding or normalisation layer (`vmap_friendly`; others may lack batching
rules), (2) BatchNorm uses running statistics and no point needs its own buffers, and (3) one
point needs at most `VMAP_MAX_POINT_BYTES`, counting its parameters and every layer output on the
largest batch. Then, for at least `RACE_MIN_POINTS` points, the two race: the first ``K`` points
are evaluated with ``vmap``, the next ``K`` with the loop, and the rest the way that was faster
per point, where ``K`` is a chunk (`VMAP_CHUNK_BYTES` worth of points, 2 to 64) but at most a
quarter of the points. Every raced point is a real grid point, so the race costs nothing but the
slower half of ``2 K`` points. Fewer points use ``vmap`` only up to `VMAP_SURE_BYTES` per
point. A ``vmap`` failure (an op without a batching rule) is logged and the loop does everything.

Why (one-off timings and ``scripts/bench_landscape.py`` on the shared 2-core CPU machine, torch
2.13; cost per point in no-grad forwards of the same batch, loop / vmap, one thread, CPU time;
other jobs loaded the machine, so single numbers moved by up to 1.5x between runs). The loop
costs 1.0-1.6 on every model tried (the rest of a point is the loss, about 0.2 on the digits MLP,
whose log-softmax over 10 classes is slow on CPU). ``vmap`` wins where each layer's work is tiny,
so that per-op overhead dominates: MLP 64-32-32-10, batch 64 (0.08 MiB per point) 2.0 / 1.1;
ResNet-8 x0.25 on 8x8, batch 16 (0.2 MiB) 1.1 / 0.3 and batch 64 (0.8 MiB) 1.1 / 0.6; 1-D CNN
(8, 8), batch 64 (0.3 MiB) 1.3 / 1.05. It loses where layers are larger, even at a similar
memory per point: digits MLP 64-128-128-10, batch 256 (0.9 MiB) 1.5-1.7 / 1.8-2.9 (one earlier
quiet 2-thread run, with a slower loop, had 2.1 / 1.3); 1-D CNN (32, 32, 32), batch 32 (0.7 MiB)
1.2 / 1.6; digits CNN, batch 32 (0.9 MiB) 1.1 / 1.1. Beyond a few MiB per point it always lost
(convolutions become grouped convolutions, and chunks leave the cache): 1-D CNN batch 256
(5.5 MiB) 1.1 / 4.2; ResNet-8 8x8 batch 64 (3.4 MiB) 1.1 / 1.3; MLP 64-512-512-10 (4.2 MiB)
1.1 / 1.5; ResNet-20 on 32x32 (31 MiB) 1.0 / 1.4. Since the winner below 1 MiB depends on layer
sizes, thread count and load, a measured race decides there rather than a fixed threshold.
Chunks larger than the last-level cache were slower (digits MLP, 2 threads: chunk 16 1.3, chunk
64 2.0). No GPU was available to measure; the race applies there too (with a device
synchronisation before each clock reading).

Every mean is the sample-weighted mean over all batches of all ranks: each rank evaluates every
point on its own share of the batches and one ``DataSource.sum`` per split adds the partial sums
(so under DDP the grid work is shared by splitting the data, not the points).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from lsuite.errors import require
from lsuite.functional.params import Params, numel, unflatten
from lsuite.probes.data_source import DataSource
from lsuite.probes.grid_points import AffinePoints, SegmentPoints, flat_params
from lsuite.probes.point import ModelPoint

log = logging.getLogger(__name__)

Batching = Literal["auto", "vmap", "loop"]
BATCHINGS = ("auto", "vmap", "loop")

VMAP_MAX_POINT_BYTES = 2 * 2**20
"""Largest memory per point (parameters plus layer outputs) for which ``auto`` tries ``vmap``."""

VMAP_SURE_BYTES = 2**18
"""Memory per point up to which ``vmap`` won on every model measured (used without a race)."""

RACE_MIN_POINTS = 64
"""``auto`` races ``vmap`` against the loop for at least this many points (a race among fewer
cost more than it could win: on a 51-point digits-MLP line it took 2.0 forwards per point vs 1.6
for the loop alone, when ``vmap`` lost)."""

VMAP_CHUNK_BYTES = 16 * 2**20
"""Memory of one ``vmap`` chunk; the chunk size is this over the memory per point."""

_VMAP_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    _ConvNd,
    nn.Bilinear,
    nn.Embedding,
    nn.LayerNorm,
    nn.GroupNorm,
    _BatchNorm,
)


@dataclasses.dataclass(frozen=True)
class SplitValues:
    """Mean loss and accuracy of every point on one split.

    Attributes:
        loss: ``(N,)`` float64 mean loss per point (mean over all probe samples of all ranks).
        accuracy: ``(N,)`` float64 top-1 accuracy per point, or None when the targets are not
            class indices (accuracy is ``argmax`` over dim 1 of the outputs equal to the target).
    """

    loss: Tensor
    accuracy: Tensor | None


Points = AffinePoints | SegmentPoints
BuffersFn = Callable[[Params], Params]
"""Maps one point's parameters to the buffers to evaluate it with (e.g. recomputed BN stats)."""


def vmap_friendly(module: nn.Module) -> bool:
    """Return True when every submodule owning parameters is a linear/conv/embedding/norm layer."""
    return all(
        isinstance(m, _VMAP_MODULES)
        for m in module.modules()
        if next(m.parameters(recurse=False), None) is not None
    )


def choose_batching(
    point: ModelPoint,
    batches: Sequence[Any],
    num_points: int,
    batching: Batching = "auto",
    per_point_buffers: bool = False,
) -> tuple[Literal["vmap", "loop", "race"], int]:
    """Return ``(mode, chunk)`` for evaluating ``num_points`` points (the rule in the module doc).

    Args:
        point: the frozen model.
        batches: the ``(inputs, targets)`` batches the points are evaluated on.
        num_points: number of points ``N``.
        batching: ``"auto"``, or ``"vmap"`` / ``"loop"`` to force a mode.
        per_point_buffers: whether each point needs its own buffers (forces ``"loop"``).

    Returns:
        The mode (``"race"``: time both on the first chunks, see the module doc) and the number
        of points per ``vmap`` call (1 for ``"loop"``).

    Raises:
        ConfigError: for an unknown ``batching``, or ``"vmap"`` where points need their own
            BatchNorm statistics.
    """
    require(batching in BATCHINGS, "batching", batching, f"one of {list(BATCHINGS)}")
    train_bn = point.bn_mode == "train" and any(
        isinstance(m, _BatchNorm) for m in point.skeleton.modules()
    )
    require(
        batching != "vmap" or not (train_bn or per_point_buffers),
        "batching",
        batching,
        "'auto' or 'loop' when BatchNorm uses batch statistics (bn_mode 'train') or is "
        "recomputed at every point",
    )
    if batching == "loop" or per_point_buffers or num_points <= 1 or not batches:
        return "loop", 1
    if batching == "auto" and (train_bn or not vmap_friendly(point.skeleton)):
        return "loop", 1
    per_point = _bytes_per_point(point, batches)
    chunk = int(min(max(2, min(64, VMAP_CHUNK_BYTES // max(per_point, 1))), num_points))
    if batching == "vmap":
        return "vmap", chunk
    if per_point > VMAP_MAX_POINT_BYTES:
        return "loop", 1
    if num_points >= RACE_MIN_POINTS:
        return "race", chunk
    return ("vmap", chunk) if per_point <= VMAP_SURE_BYTES else ("loop", 1)


def evaluate_points(
    point: ModelPoint,
    data: Mapping[str, DataSource],
    points: Points,
    *,
    batching: Batching = "auto",
    buffers_fn: BuffersFn | None = None,
) -> tuple[dict[str, SplitValues], str]:
    """Return the mean loss and accuracy of every point on every split.

    Args:
        point: the frozen model (skeleton, buffers, loss function; its own weights are unused).
        data: probe batches by split.
        points: the family of points, ``N`` of them.
        batching: ``"auto"`` (the rule in the module doc), ``"vmap"`` or ``"loop"``.
        buffers_fn: per-point buffers (forces the loop), e.g. recomputed BatchNorm statistics;
            the point's buffers when None (a copy for ``bn_mode="train"``).

    Returns:
        ``({split: SplitValues}, mode)`` with ``mode`` the batching used (``"vmap"``/``"loop"``).

    Raises:
        RuntimeError: when ``batching="vmap"`` is forced and the model cannot be vmapped (with
            ``"auto"`` such a failure is logged and the loop is used instead).
    """
    flat = flat_params(point)
    all_batches = [b for source in data.values() for b in source.batches]
    mode, chunk = choose_batching(
        point, all_batches, len(points), batching, per_point_buffers=buffers_fn is not None
    )
    buffers = point.buffers
    if point.bn_mode == "train":
        buffers = {k: v.clone() for k, v in buffers.items()}
    everything = range(len(points))
    parts: list[dict[str, Tensor]] = []

    def loop(indices: range) -> None:
        parts.append(_evaluate_loop(point, data, points, buffers, flat, buffers_fn, indices))

    def batched(indices: range) -> None:
        parts.append(_evaluate_vmap(point, data, points, buffers, flat, chunk, indices))

    if mode == "loop":
        loop(everything)
    elif mode == "vmap" and batching == "vmap":
        batched(everything)
    elif mode == "vmap":
        mode = "vmap" if _vmap_or_loop(batched, loop, everything) else "loop"
    else:
        mode = _race(batched, loop, len(points), min(chunk, len(points) // 4), flat.device)
    out: dict[str, SplitValues] = {}
    for name, source in data.items():
        values = torch.cat([p[name] for p in parts], dim=1)  # (num_local_batches, N, 2)
        out[name] = _reduce(source, values, len(points), flat.device)
    return out, mode


def _race(
    batched: Callable[[range], None],
    loop: Callable[[range], None],
    count: int,
    chunk: int,
    device: torch.device,
) -> Literal["vmap", "loop"]:
    """Evaluate one chunk each way, then the rest the faster way.

    A ``vmap`` failure (an op without a batching rule) is logged and the loop does everything.

    Returns:
        The mode used for the remaining points (the faster one per point).
    """
    first = range(min(chunk, count))
    start = _now(device)
    if not _vmap_or_loop(batched, loop, first):
        loop(range(first.stop, count))
        return "loop"
    vmap_time = (_now(device) - start) / len(first)
    second = range(first.stop, min(first.stop + chunk, count))
    if not second:
        return "vmap"
    start = _now(device)
    loop(second)
    loop_time = (_now(device) - start) / len(second)
    winner: Literal["vmap", "loop"] = "vmap" if vmap_time < loop_time else "loop"
    rest = range(second.stop, count)
    if rest:
        (batched if winner == "vmap" else loop)(rest)
    return winner


def _vmap_or_loop(
    batched: Callable[[range], None], loop: Callable[[range], None], indices: range
) -> bool:
    """Evaluate ``indices`` with ``vmap``, or with the loop if ``vmap`` fails (logged).

    Returns:
        Whether ``vmap`` succeeded.
    """
    try:
        batched(indices)
    except RuntimeError as error:  # an op without a batching rule in a user model
        log.warning("batching: vmap failed (%s); evaluating the points in a loop", error)
        loop(indices)
        return False
    return True


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _evaluate_loop(
    point: ModelPoint,
    data: Mapping[str, DataSource],
    points: Points,
    buffers: Params,
    flat: Tensor,
    buffers_fn: BuffersFn | None,
    indices: range,
) -> dict[str, Tensor]:
    """Return per split the ``(num_local_batches, n, 2)`` loss and correct count of ``indices``.

    The skeleton's parameter slots are bound once to views into one work vector, which is
    rewritten for every point; this is ``functional_call``'s re-parametrisation done once per
    grid instead of once per forward (which cost 0.15-0.2 forwards per point on the digits MLP).
    """
    work = torch.empty_like(flat)
    params = unflatten(work, point.params)  # views into `work`, rewritten for every point
    losses: dict[str, list[Tensor]] = {name: [] for name in data}
    hits = {
        name: [_Hits(targets) for _, targets in source.batches] for name, source in data.items()
    }
    binding = _Binding(point.skeleton)
    try:
        binding.bind({**buffers, **params})
        with torch.no_grad():
            for i in indices:
                points.fill(i, work)
                if buffers_fn is not None:
                    binding.bind(buffers_fn(params))
                for name, source in data.items():
                    for (inputs, targets), counter in zip(source.batches, hits[name], strict=True):
                        args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
                        outputs = point.skeleton(*args)
                        losses[name].append(point.loss_fn(outputs, targets))
                        counter.add(outputs)
    finally:
        binding.restore()
    out: dict[str, Tensor] = {}
    for name in data:
        if not losses[name]:
            out[name] = flat.new_empty(0, len(indices), 2)
            continue
        loss = torch.stack(losses[name]).to(torch.float64).reshape(len(indices), -1).T
        count = torch.stack([counter.counts() for counter in hits[name]])  # (batches, n)
        out[name] = torch.stack([loss, count], dim=-1)
    return out


class _Hits:
    """Top-1 hit counts of many points on one batch, computed a block of outputs at a time.

    One ``argmax``/``==``/``sum`` per block instead of per point saved 0.1 forwards per point
    on the digits MLP.
    """

    def __init__(self, targets: Tensor) -> None:
        self.targets = targets
        self.pending: list[Tensor] = []
        self.pending_bytes = 0
        self.done: list[Tensor] = []

    def add(self, outputs: Tensor) -> None:
        """Queue one point's outputs (or record nan when accuracy is undefined)."""
        if not _has_accuracy(outputs, self.targets):
            self.done.append(torch.full((1,), float("nan"), dtype=torch.float64))
            return
        self.pending.append(outputs)
        self.pending_bytes += outputs.numel() * outputs.element_size()
        if len(self.pending) >= 64 or self.pending_bytes >= 2**22:
            self._flush()

    def counts(self) -> Tensor:
        """Return the ``(n,)`` float64 hit counts of every point added, in order."""
        self._flush()
        device = self.targets.device
        return torch.cat([c.to(device, torch.float64) for c in self.done])

    def _flush(self) -> None:
        if self.pending:
            stacked = torch.stack(self.pending)  # (K, B, C, ...)
            hit = stacked.argmax(2) == self.targets
            self.done.append(hit.reshape(len(self.pending), -1).sum(1))
            self.pending, self.pending_bytes = [], 0


class _Binding:
    """Put real tensors into a skeleton's parameter and buffer slots, and take them out again.

    Every slot of a tied tensor is bound to the tensor named by its first name, which is the
    key `snapshot` uses.
    """

    def __init__(self, skeleton: nn.Module) -> None:
        keys = {id(t): k for k, t in reversed(list(skeleton.named_parameters()))}
        keys.update({id(t): k for k, t in reversed(list(skeleton.named_buffers()))})
        self.slots: list[tuple[dict[str, Any], str, Any, str]] = []
        for module in skeleton.modules():
            for table in (module._parameters, module._buffers):
                for slot, tensor in table.items():
                    if tensor is not None and id(tensor) in keys:
                        self.slots.append((table, slot, tensor, keys[id(tensor)]))

    def bind(self, state: Mapping[str, Tensor]) -> None:
        """Put ``state[key]`` into every slot of ``key`` that ``state`` has."""
        for table, slot, _, key in self.slots:
            if key in state:
                table[slot] = state[key]

    def restore(self) -> None:
        """Put the skeleton's own (meta) tensors back."""
        for table, slot, original, _ in self.slots:
            table[slot] = original


def _evaluate_vmap(
    point: ModelPoint,
    data: Mapping[str, DataSource],
    points: Points,
    buffers: Params,
    flat: Tensor,
    chunk: int,
    indices: range,
) -> dict[str, Tensor]:
    """Return per split the ``(num_local_batches, n, 2)`` loss and correct count of ``indices``."""
    parts: dict[str, list[Tensor]] = {name: [] for name in data}
    batched = vmap(
        lambda p, x, y: _loss_and_accuracy(point, {**buffers, **p}, x, y),
        in_dims=(0, None, None),
    )
    with torch.no_grad():
        for start in range(indices.start, indices.stop, chunk):
            part = slice(start, min(start + chunk, indices.stop))
            params = unflatten(points.stack(part), point.params)  # (K, *shape) each
            for name, source in data.items():
                values = [batched(params, x, y) for x, y in source.batches]
                size = part.stop - part.start
                empty = torch.empty(0, size, 2, dtype=flat.dtype, device=flat.device)
                parts[name].append(torch.stack(values) if values else empty)
    return {name: torch.cat(chunks, dim=1) for name, chunks in parts.items()}


def _loss_and_accuracy(point: ModelPoint, state: Params, inputs: Any, targets: Tensor) -> Tensor:
    """Return ``[loss, correct count]`` of one batch at ``state`` (count nan if undefined)."""
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    outputs = functional_call(point.skeleton, state, args, strict=False)
    loss = point.loss_fn(outputs, targets)
    return torch.stack([loss, _correct(outputs, targets).to(loss.dtype)])


def _correct(outputs: Tensor, targets: Tensor) -> Tensor:
    """Return the number of top-1 hits (``argmax`` over dim 1, an int), or nan when undefined."""
    if _has_accuracy(outputs, targets):
        return (outputs.argmax(1) == targets).sum()  # becomes a float64 mean in `_reduce`
    return torch.full((), float("nan"), dtype=outputs.dtype, device=outputs.device)


def _has_accuracy(outputs: Tensor, targets: Tensor) -> bool:
    return (
        not targets.is_floating_point()
        and not targets.is_complex()
        and outputs.dim() == targets.dim() + 1
        and outputs.dim() >= 2
    )


def _reduce(
    source: DataSource, values: Tensor, num_points: int, device: torch.device
) -> SplitValues:
    """Weight ``(num_local_batches, N, 2)`` batch values into means over all ranks."""
    weights = torch.tensor(
        [[w, w / max(y.numel(), 1)] for (_, y), w in source.weights()],
        dtype=torch.float64,
        device=device,
    )  # (num_local_batches, 2): loss means and correct counts
    if values.shape[0] > 0:
        local = torch.einsum("bk,bnk->nk", weights, values.to(torch.float64))
    else:
        local = torch.zeros(num_points, 2, dtype=torch.float64, device=device)
    total = source.sum(local.T.contiguous()).cpu()  # (2, N)
    accuracy = None if bool(torch.isnan(total[1]).all()) else total[1]
    return SplitValues(loss=total[0], accuracy=accuracy)


def _bytes_per_point(point: ModelPoint, batches: Sequence[Any]) -> int:
    """Return parameter plus layer-output bytes of one point on the largest batch."""
    inputs, _ = max(batches, key=lambda b: int(b[1].shape[0]))
    count = [0]

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        del module, args
        if isinstance(output, Tensor):
            count[0] += output.numel()

    leaves = [m for m in point.skeleton.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            point.outputs(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return (count[0] + numel(point.params)) * point.dtype.itemsize
