"""Choose how to evaluate many points: a loop over one work vector, or ``vmap`` over chunks.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from lsuite.errors import require
from lsuite.functional.params import numel
from lsuite.probes.point import ModelPoint

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
