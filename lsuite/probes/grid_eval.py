"""Evaluate the mean loss and accuracy at many points in weight space (grids, lines, samples).

Points are flat ``(P,)`` parameter vectors in the key order of ``point.params`` (see
`lsuite.functional.params.flatten`). A family of points is either affine,
``base + coefficients @ directions`` (`AffinePoints`: lines, planes, random samples), or a
straight segment evaluated with ``torch.lerp`` (`SegmentPoints`: exact at both ends). Nothing is
deep-copied per point and the model is never touched; every point goes through the point's
stateless skeleton with ``torch.func.functional_call``, in one of two ways:

- ``"loop"``: one work vector is rewritten in place for each point (one or two fused adds) and
  the parameter dict handed to ``functional_call`` is a set of views into it;
- ``"vmap"``: ``torch.func.vmap`` over a chunk of ``K`` points, whose ``(K, P)`` parameters are
  built by one ``addmm`` (or ``lerp``).

Rule for ``batching="auto"`` (measured with ``scripts/bench_landscape.py`` and timing scripts on
the 2-core CPU machine, torch 2.13; cost per point in forwards of the same batch): ``vmap`` turns
a linear layer into one batched matmul but a convolution into a grouped convolution, which
was 2-10x slower per point than a loop on every conv model tried (1-D CNN 2.9-10 vs 1.1;
ResNet-20 2.3 vs 0.92). It pays only where a single forward is too small to keep the cores
busy: on the digits MLP 64-128-128-10 (batch 256) chunks of 16 cost 1.1-1.3 vs 1.8-2.1 for the
loop with 2 threads (1.5 vs 1.8 with one), on an MLP 64-32-32-10 (batch 64) 0.8 vs 3.7, while an
MLP 64-512-512-10 (batch 256, 3.2 MiB per point) tied (1.5 vs 1.6) and batch 2048 (4.2 MiB)
lost (1.9 vs 1.5). Chunks larger than the last-level cache were slower (chunk 64 of the
digits MLP: 2.0-2.4). Hence ``vmap`` is chosen when (1) every module that owns parameters is a
linear, embedding or normalisation layer (`vmap_friendly`), (2) BatchNorm uses running
statistics and no per-point buffers are needed, and (3) one point needs at most
`VMAP_MAX_POINT_BYTES` (parameters plus every layer output of the largest batch); the chunk holds
`VMAP_CHUNK_BYTES` worth of points, between 2 and 64. No GPU was available to measure; the same
rule applies there.

Every mean is the sample-weighted mean over all batches of all ranks: each rank evaluates every
point on its own share of the batches and one ``DataSource.sum`` per split adds the partial sums
(so under DDP the grid work is shared by splitting the data, not the points).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from lsuite.errors import ConfigError, require
from lsuite.functional.params import Params, flatten, numel, unflatten
from lsuite.probes.data_source import DataSource
from lsuite.probes.point import ModelPoint

Batching = Literal["auto", "vmap", "loop"]
BATCHINGS = ("auto", "vmap", "loop")

VMAP_MAX_POINT_BYTES = 2 * 2**20
"""Largest memory per point (parameters plus layer outputs) for which ``auto`` picks ``vmap``."""

VMAP_CHUNK_BYTES = 8 * 2**20
"""Memory of one ``vmap`` chunk; the chunk size is this over the memory per point."""

_VMAP_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear,
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


class AffinePoints:
    """Points ``base + coefficients[i] @ directions``.

    Args:
        base: ``(P,)`` flat parameters.
        directions: ``(J, P)`` flat directions (same dtype and device as ``base``).
        coefficients: ``(N, J)`` coordinates of the points; zero entries are skipped.
    """

    def __init__(self, base: Tensor, directions: Tensor, coefficients: Tensor) -> None:
        self.base = base
        self.directions = directions
        self.coefficients = coefficients.detach().to("cpu", torch.float64)
        self._rows = self.coefficients.tolist()

    def __len__(self) -> int:
        return len(self._rows)

    def fill(self, index: int, out: Tensor) -> None:
        """Write point ``index``, shape ``(P,)``, into ``out``."""
        started = False
        for j, c in enumerate(self._rows[index]):
            if c == 0.0:
                continue
            if started:
                out.add_(self.directions[j], alpha=c)
            else:
                torch.add(self.base, self.directions[j], alpha=c, out=out)
                started = True
        if not started:
            out.copy_(self.base)

    def stack(self, indices: slice) -> Tensor:
        """Return the points ``indices`` as ``(K, P)`` rows."""
        c = self.coefficients[indices].to(self.base.device, self.base.dtype)
        return torch.addmm(self.base.unsqueeze(0), c, self.directions)


class SegmentPoints:
    """Points ``lerp(start, end, alpha) = (1 - alpha) start + alpha end``, exact at both ends.

    Args:
        start: ``(P,)`` flat parameters at ``alpha = 0``.
        end: ``(P,)`` flat parameters at ``alpha = 1``.
        alphas: ``(N,)`` positions; values outside ``[0, 1]`` extrapolate.
    """

    def __init__(self, start: Tensor, end: Tensor, alphas: Sequence[float]) -> None:
        self.start = start
        self.end = end
        self.alphas = [float(a) for a in alphas]

    def __len__(self) -> int:
        return len(self.alphas)

    def fill(self, index: int, out: Tensor) -> None:
        """Write point ``index``, shape ``(P,)``, into ``out``."""
        torch.lerp(self.start, self.end, self.alphas[index], out=out)

    def stack(self, indices: slice) -> Tensor:
        """Return the points ``indices`` as ``(K, P)`` rows."""
        a = torch.tensor(self.alphas[indices], dtype=self.start.dtype, device=self.start.device)
        return torch.lerp(self.start.unsqueeze(0), self.end.unsqueeze(0), a.unsqueeze(1))


Points = AffinePoints | SegmentPoints
BuffersFn = Callable[[Params], Params]
"""Maps one point's parameters to the buffers to evaluate it with (e.g. recomputed BN stats)."""


def flat_params(point: ModelPoint) -> Tensor:
    """Return the point's parameters as one ``(P,)`` vector in key order.

    Raises:
        ConfigError: when the parameters do not share one floating dtype.
    """
    dtypes = {v.dtype for v in point.params.values()}
    require(len(dtypes) == 1, "model", sorted(map(str, dtypes)), "parameters of one dtype")
    return flatten(point.params).detach()


def vmap_friendly(module: nn.Module) -> bool:
    """Return True when every submodule owning parameters is a linear/embedding/norm layer."""
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
) -> tuple[Literal["vmap", "loop"], int]:
    """Return ``(mode, chunk)`` for evaluating ``num_points`` points (the rule in the module doc).

    Args:
        point: the frozen model.
        batches: the ``(inputs, targets)`` batches the points are evaluated on.
        num_points: number of points ``N``.
        batching: ``"auto"``, or ``"vmap"`` / ``"loop"`` to force a mode.
        per_point_buffers: whether each point needs its own buffers (forces ``"loop"``).

    Returns:
        The mode and the number of points per ``vmap`` call (1 for ``"loop"``).

    Raises:
        ConfigError: for an unknown ``batching``.
    """
    require(batching in BATCHINGS, "batching", batching, f"one of {list(BATCHINGS)}")
    if batching == "loop" or per_point_buffers or num_points <= 1 or not batches:
        return "loop", 1
    train_bn = point.bn_mode == "train" and any(
        isinstance(m, _BatchNorm) for m in point.skeleton.modules()
    )
    if batching == "auto" and (train_bn or not vmap_friendly(point.skeleton)):
        return "loop", 1
    per_point = _bytes_per_point(point, batches)
    if batching == "auto" and per_point > VMAP_MAX_POINT_BYTES:
        return "loop", 1
    chunk = max(2, min(64, VMAP_CHUNK_BYTES // max(per_point, 1)))
    return "vmap", int(min(chunk, num_points))


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
    """
    flat = flat_params(point)
    all_batches = [b for source in data.values() for b in source.batches]
    mode, chunk = choose_batching(
        point, all_batches, len(points), batching, per_point_buffers=buffers_fn is not None
    )
    buffers = point.buffers
    if point.bn_mode == "train":
        buffers = {k: v.clone() for k, v in buffers.items()}
    # per split: list over points (or chunks) of (num_local_batches, K, 2) loss/accuracy values
    parts: dict[str, list[Tensor]] = {name: [] for name in data}
    with torch.no_grad():
        if mode == "loop":
            work = torch.empty_like(flat)
            params = unflatten(work, point.params)
            state = {**buffers, **params}
            for i in range(len(points)):
                points.fill(i, work)
                if buffers_fn is not None:
                    state = {**buffers_fn(params), **params}
                for name, source in data.items():
                    parts[name].append(_measure_batches(point, state, source).unsqueeze(1))
        else:
            batched = vmap(
                lambda p, x, y: _loss_and_accuracy(point, {**buffers, **p}, x, y),
                in_dims=(0, None, None),
            )
            for start in range(0, len(points), chunk):
                params = unflatten(points.stack(slice(start, start + chunk)), point.params)
                for name, source in data.items():
                    values = [batched(params, x, y) for x, y in source.batches]
                    parts[name].append(torch.stack(values) if values else _empty(flat, chunk))
    out: dict[str, SplitValues] = {}
    for name, source in data.items():
        out[name] = _reduce(source, parts[name], len(points), flat.device)
    return out, mode


def recompute_batch_norm(
    point: ModelPoint, params: Params, source: DataSource, num_batches: int
) -> Params:
    """Return the point's buffers with BatchNorm running statistics recomputed at ``params``.

    Each BatchNorm layer's statistics are reset and averaged over the first ``num_batches``
    local batches (momentum ``None``: the equal-weight mean of the batch statistics, as
    ``torch.optim.swa_utils.update_bn`` does), then averaged over ranks weighted by their batch
    counts, so a multi-rank result equals the single-rank one on the same batches.

    Args:
        point: the frozen model.
        params: the weights to recompute the statistics at (same keys and shapes as
            ``point.params``).
        source: probe batches; the first ``num_batches`` of this rank are used.
        num_batches: number of local batches, ``>= 1``.

    Returns:
        Buffers with the keys of ``point.buffers`` (fresh tensors; the point is unchanged).
    """
    skeleton = _train_bn_skeleton(point.skeleton)
    names = _bn_buffer_names(skeleton)
    buffers = {k: v.clone() for k, v in point.buffers.items()}
    for mean_key, var_key, count_key in names:
        buffers[mean_key].zero_()
        buffers[var_key].fill_(1.0)
        buffers[count_key].zero_()
    used = source.batches[:num_batches]
    state = {**buffers, **params}
    with torch.no_grad():
        for inputs, _ in used:
            args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
            functional_call(skeleton, state, args, strict=False)
    if source.world_size > 1:
        count = torch.tensor(float(len(used)), dtype=torch.float64, device=point.device)
        total = source.sum(count)
        for mean_key, var_key, count_key in names:
            for key in (mean_key, var_key):
                summed = source.sum(buffers[key].double() * count) / total
                buffers[key] = summed.to(buffers[key].dtype)
            buffers[count_key] = source.sum(buffers[count_key])
    return buffers


def _measure_batches(point: ModelPoint, state: Params, source: DataSource) -> Tensor:
    """Return ``(num_local_batches, 2)`` mean loss and correct count of each local batch."""
    rows = [_loss_and_accuracy(point, state, x, y) for x, y in source.batches]
    if not rows:
        return torch.empty(0, 2, dtype=point.dtype, device=point.device)
    return torch.stack(rows)


def _loss_and_accuracy(point: ModelPoint, state: Params, inputs: Any, targets: Tensor) -> Tensor:
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    outputs = functional_call(point.skeleton, state, args, strict=False)
    loss = point.loss_fn(outputs, targets)
    if _has_accuracy(outputs, targets):
        # a count is exact in float32; it becomes a mean in float64 in `_reduce`
        correct = (outputs.argmax(1) == targets).sum().to(loss.dtype)
    else:
        correct = torch.full_like(loss, float("nan"))
    return torch.stack([loss, correct])


def _has_accuracy(outputs: Tensor, targets: Tensor) -> bool:
    return (
        not targets.is_floating_point()
        and not targets.is_complex()
        and outputs.dim() == targets.dim() + 1
        and outputs.dim() >= 2
    )


def _reduce(
    source: DataSource, parts: list[Tensor], num_points: int, device: torch.device
) -> SplitValues:
    weights = torch.tensor(
        [[w, w / max(y.numel(), 1)] for (_, y), w in source.weights()],
        dtype=torch.float64,
        device=device,
    )  # (num_local_batches, 2): loss means and correct counts
    if parts and parts[0].shape[0] > 0:
        values = torch.cat(parts, dim=1).to(torch.float64)  # (num_local_batches, N, 2)
        local = torch.einsum("bk,bnk->nk", weights, values)
    else:
        local = torch.zeros(num_points, 2, dtype=torch.float64, device=device)
    total = source.sum(local.T.contiguous()).cpu()  # (2, N)
    accuracy = None if bool(torch.isnan(total[1]).all()) else total[1]
    return SplitValues(loss=total[0], accuracy=accuracy)


def _empty(flat: Tensor, chunk: int) -> Tensor:
    return torch.empty(0, chunk, 2, dtype=flat.dtype, device=flat.device)


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


def _train_bn_skeleton(skeleton: nn.Module) -> nn.Module:
    """Copy the (meta) skeleton with BatchNorm layers in train mode and cumulative averaging."""
    copied = copy.deepcopy(skeleton)
    for m in copied.modules():
        if isinstance(m, _BatchNorm) and m.track_running_stats:
            m.train()
            m.momentum = None
    return copied


def _bn_buffer_names(skeleton: nn.Module) -> list[tuple[str, str, str]]:
    names = []
    for prefix, m in skeleton.named_modules():
        if isinstance(m, _BatchNorm) and m.track_running_stats:
            p = f"{prefix}." if prefix else ""
            names.append((f"{p}running_mean", f"{p}running_var", f"{p}num_batches_tracked"))
    if not names:
        raise ConfigError(
            "bn_recompute_batches: got a value > 0; the model has no BatchNorm layer that tracks "
            "running statistics"
        )
    return names


def batch_norm_statistics(point: ModelPoint, recomputed: bool) -> str:
    """Say which BatchNorm statistics the evaluation used.

    Args:
        point: the frozen model.
        recomputed: whether the running statistics were recomputed at every point.

    Returns:
        ``"none"`` (no BatchNorm with running statistics), ``"batch"`` (``bn_mode="train"``),
        ``"recomputed"``, or ``"point"`` (the measured point's running statistics, for every
        point of the grid).
    """
    tracked = any(
        isinstance(m, _BatchNorm) and m.track_running_stats for m in point.skeleton.modules()
    )
    if not tracked:
        return "none"
    if point.bn_mode == "train":
        return "batch"
    return "recomputed" if recomputed else "point"


def grid_axis(span: Sequence[float], num_points: int, key: str = "span") -> list[float]:
    """Return ``num_points`` evenly spaced coordinates over ``span`` that include 0 exactly.

    Coordinates are ``first + (last - first) * i / (num_points - 1)`` in float64; the one
    within ``1e-9`` of zero is set to exactly 0 so the centre is evaluated at the weights
    themselves.

    Args:
        span: ``(first, last)`` with ``first < 0 < last``.
        num_points: number of coordinates, ``>= 3``.
        key: argument name for error messages.

    Returns:
        The coordinates, ascending.

    Raises:
        ConfigError: when ``span`` is not ``(first < 0 < last)``, ``num_points`` is not an
            int ``>= 3``, or the grid misses 0 (e.g. an even count on a symmetric span).
    """
    require(
        isinstance(num_points, int) and not isinstance(num_points, bool) and num_points >= 3,
        "num_points",
        num_points,
        "an int >= 3",
    )
    ok = (
        isinstance(span, Sequence)
        and len(span) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in span)
        and span[0] < 0 < span[1]
    )
    require(ok, key, span, "(first, last) with first < 0 < last")
    first, last = float(span[0]), float(span[1])
    axis = [first + (last - first) * i / (num_points - 1) for i in range(num_points)]
    axis = [0.0 if abs(a) < 1e-9 * (last - first) else a for a in axis]
    require(
        0.0 in axis,
        "num_points",
        num_points,
        f"a count whose grid over {tuple(span)} contains 0 (an odd count for a symmetric span)",
    )
    return axis
