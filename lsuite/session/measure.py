"""Measure one module with one probe: snapshot, guard, run, record, publish; no Trainer needed."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, nullcontext
from typing import Any, Literal

import torch
from torch import nn
from torch.optim import Optimizer

from lsuite.errors import ConfigError
from lsuite.functional.params import Params
from lsuite.probes.base import Probe, ProbeResult
from lsuite.probes.data_source import Batch, DataSource, PeerFailure
from lsuite.probes.point import BatchNormMode, LossFn, resolve_dtype, snapshot
from lsuite.probes.progress import Listener, listening
from lsuite.results.records import make_failure_record, make_record
from lsuite.session.guard import CHECK_ENV, preserved_training_state
from lsuite.session.outputs import Outputs, publish
from lsuite.session.progress_display import progress_line
from lsuite.session.sync import Sync

log = logging.getLogger(__name__)

OnError = Literal["raise", "warn"]

_ONE_PROCESS = Sync()


class ProbeFailed(RuntimeError):
    """A probe raised (on some rank) and ``on_error="raise"``; the message names the probe."""


def resolve_probe_dtype(value: str | torch.dtype | None, module: nn.Module) -> torch.dtype | None:
    """Return the dtype probes compute in: ``value``, or float32 for a 16-bit module.

    Args:
        value: ``"float32"``, ``"float64"``, a torch dtype, or None (the module's own dtype,
            except that bfloat16 / float16 weights are measured in float32).
        module: the network to measure.

    Returns:
        The dtype to cast parameters and buffers to, or None to keep them as they are.

    Raises:
        ConfigError: for any other value.
    """
    if value is None:
        floating = [p.dtype for p in module.parameters() if p.is_floating_point()]
        half = floating and floating[0] in (torch.float16, torch.bfloat16)
        return torch.float32 if half else None
    return resolve_dtype(value)


def measure_module(
    probe: Probe,
    module: nn.Module,
    batches: Mapping[str, Sequence[Batch]],
    *,
    loss_fn: LossFn,
    forward_fn: Any = None,
    bn_mode: BatchNormMode = "eval",
    probe_dtype: str | torch.dtype | None = None,
    skeleton: nn.Module | None = None,
    meta: Mapping[str, Any],
    seed: int,
    anchors: Mapping[str, Params] | None = None,
    outputs: Outputs,
    sync: Sync = _ONE_PROCESS,
    on_error: OnError = "raise",
    progress: bool | Listener = False,
    optimizers: Sequence[Optimizer] = (),
) -> ProbeResult | None:
    """Measure ``module`` with ``probe`` and publish the record; every rank calls this together.

    The module is frozen into a point (`snapshot`: detached copies, a stateless skeleton, probe
    dtype), the probe runs inside the training-state guard (weights, buffers, grads, modes, RNG
    and optimizer state are as before afterwards; compared bit for bit when
    ``LSUITE_CHECK_PROBES=1``) with autocast off, and rank zero appends the record to
    ``outputs.directory/probes/<name>.jsonl``, logs its scalars and draws its plots. The random
    draws come from ``torch.Generator().manual_seed(seed * 1_000_003 + meta["step"])``, so a
    measurement of the same weights at the same step reproduces the same numbers.

    When the probe raises on any rank, every rank learns it (see `Sync.agree_on_failure`) and
    the outcome is the same everywhere: with ``on_error="warn"`` a failure record is written,
    ``probe/<name>/failed = 1`` is logged, one warning names the error, and None is returned;
    with ``"raise"`` a `ProbeFailed` naming the probe is raised on every rank.

    Args:
        probe: the measurement.
        module: the network (never modified).
        batches: this rank's share of the probe batches by split, ``(inputs, targets)`` on the
            module's device; the first split is the primary one.
        loss_fn: ``loss_fn(outputs, targets)``, the mean loss over a batch.
        forward_fn: ``(module, inputs) -> outputs``, a dotted path or a submodule name; the
            module's own forward when None.
        bn_mode: ``"eval"`` (running statistics) or ``"train"`` (batch statistics).
        probe_dtype: dtype of the measurement (see `resolve_probe_dtype`).
        skeleton: a skeleton from `make_skeleton` to reuse across measurements.
        meta: the record's metadata (``probe``, ``step``, ``epoch``, ``when``, ``weights``,
            ``world_size``, ``source``, ...); ``kind`` and ``seconds`` are added here.
        seed: seed of the probe's random draws.
        anchors: other points in weight space for the probe (e.g. ``start``), same keys and
            shapes as the module's trainable parameters.
        outputs: where records, scalars and plots go.
        sync: the ranks measuring together.
        on_error: ``"raise"`` or ``"warn"`` (see above).
        progress: True to show a progress line on rank zero for a probe that runs longer than
            ~2 s, or a `lsuite.probes.progress.Listener` that shows it elsewhere (the
            training bar's line); rank zero only in either case.
        optimizers: the optimizers whose state the guard checks.

    Returns:
        The result (on every rank), or None when the probe failed under ``on_error="warn"``.

    Raises:
        ProbeFailed: when the probe failed on some rank and ``on_error="raise"``.
        ConfigError: for an invalid ``on_error`` or ``probe_dtype``.
    """
    if on_error not in ("raise", "warn"):
        raise ConfigError(f"on_error: got {on_error!r}; expected 'raise' or 'warn'")
    start = time.perf_counter()
    device = _device(module)
    result: ProbeResult | None = None
    error: BaseException | None = None
    check = os.environ.get(CHECK_ENV, "") == "1"
    try:
        dtype = resolve_probe_dtype(probe_dtype, module)
        with (
            preserved_training_state(module, optimizers, check=check),
            torch.enable_grad(),
            _no_autocast(device),
            _progress(probe.name, progress, sync),
        ):
            data = {
                split: DataSource(
                    list(split_batches),
                    reduce_sum=sync.reduce_sum,
                    name=split,
                    world_size=sync.world_size,
                    rank=sync.rank,
                )
                for split, split_batches in batches.items()
            }
            point = snapshot(
                module,
                loss_fn,
                bn_mode=bn_mode,
                skeleton=skeleton,
                forward_fn=forward_fn,
                dtype=dtype,
            )
            generator = torch.Generator().manual_seed(seed * 1_000_003 + int(meta["step"]))
            result = probe.run(point, data, generator=generator, **dict(anchors or {}))
    except Exception as caught:  # every failure is agreed on, then handled
        error = caught
        if not isinstance(caught, PeerFailure) and not sync.is_zero:
            log.error("probe %s failed on rank %d", probe.name, sync.rank, exc_info=caught)
    failed = sync.agree_on_failure(error is not None, device)
    seconds = time.perf_counter() - start
    if not failed and result is not None:
        record = make_record({**meta, "kind": type(result).__name__, "seconds": seconds}, result)
        publish(outputs, record, result.scalars(), sync=sync)
        return result
    if error is None:
        error = PeerFailure(f"probe {probe.name}: failed on another rank (see its log)")
    if on_error == "raise":
        raise ProbeFailed(f"probe {probe.name} failed: {type(error).__name__}: {error}") from error
    record = make_failure_record({**meta, "kind": None, "seconds": seconds}, error)
    if sync.is_zero:
        log.warning(
            "probe %s failed at step %s (on_error=warn, training goes on): %s: %s",
            probe.name,
            meta["step"],
            type(error).__name__,
            error,
        )
    publish(outputs, record, {"failed": 1.0}, sync=sync)
    return None


def _progress(name: str, progress: bool | Listener, sync: Sync) -> Any:
    """Return the context that shows the probe's progress on rank zero, or does nothing."""
    if callable(progress):
        if not sync.is_zero:
            return nullcontext()
        stack = ExitStack()
        close = getattr(progress, "close", None)
        if close is not None:
            stack.callback(close)
        stack.enter_context(listening(progress))
        return stack
    return progress_line(name, progress and sync.is_zero)


def _no_autocast(device: torch.device) -> Any:
    """Return a context that turns autocast off on ``device`` (probes compute in full dtype)."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()


def _device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")
