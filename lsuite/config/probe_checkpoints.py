"""Measure saved weights with a run's probes: rebuild model and data, load, measure, record."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from lsuite.callbacks import probe_points
from lsuite.callbacks.probe_batches import sample_batches
from lsuite.config.build import build_datamodule, build_module, instantiate
from lsuite.config.run_checkpoints import Checkpoint, read_checkpoint
from lsuite.errors import ConfigError
from lsuite.functional.params import Params
from lsuite.probes.data_source import Batch, default_batch_adapter
from lsuite.results.records import make_failure_record
from lsuite.session import Outputs, Sync, measure_module, resolve_probe_dtype
from lsuite.session.outputs import publish

log = logging.getLogger(__name__)

SOURCE = "lsuite-probe"
"""``meta.source`` of every record lsuite-probe writes."""


@dataclasses.dataclass
class ProbeJob:
    """A run rebuilt for measuring: its network, data and probe settings (ProbeCallbacks).

    Attributes:
        cfg: the resolved config.
        module: the LightningModule (weights are loaded into it per checkpoint).
        datamodule: the data module, set up for ``fit``.
        callbacks: the configured `ProbeCallback` objects (their probes and batch settings).
        directory: where ``probes/`` and ``plots/`` go.
        histories: per probe, the weights its point specs name (``init``, ``epoch:N``) as the
            checkpoint's callback state kept them; None for probes without such specs.
    """

    cfg: DictConfig
    module: nn.Module
    datamodule: Any
    callbacks: list[Any]
    directory: Path
    histories: list[Any] = dataclasses.field(default_factory=list)
    _batches: dict[tuple[int, str], list[Any]] = dataclasses.field(default_factory=dict)


def build_job(cfg: DictConfig, directory: Path) -> ProbeJob:
    """Build the data module, the module and the probe callbacks of ``cfg``, before any work.

    Args:
        cfg: the resolved config (from `lsuite.config.run_dir.load_run_config` or composed).
        directory: where records and plots go.

    Returns:
        The job.

    Raises:
        ConfigError: for a bad config, or when no probe is configured.
    """
    callbacks = [
        instantiate(node, f"probes.{name}")
        for name, node in (cfg.get("probes") or {}).items()
        if node is not None
    ]
    if not callbacks:
        raise ConfigError(
            "probes: got none; expected a choice such as 'probes=[hessian_trace,interpolation]' "
            "(files in conf/probes/)"
        )
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    module.eval()
    histories = [probe_points.make_history(c.probe) for c in callbacks]
    return ProbeJob(cfg, module, datamodule, callbacks, directory, histories)


def load_checkpoint_into(job: ProbeJob, loaded: Mapping[str, Any]) -> None:
    """Load a Lightning checkpoint's weights into the module and its probe states into the probes.

    The probe states carry the weights a probe kept during training (``start: init`` of an
    interpolation), so a checkpoint is measured as its run would have measured it.

    Args:
        job: the job.
        loaded: the checkpoint (``state_dict``, and ``callbacks`` when saved by lsuite-train).
    """
    job.module.load_state_dict(loaded["state_dict"], strict=True)
    states = loaded.get("callbacks") or {}
    for callback, history in zip(job.callbacks, job.histories, strict=True):
        state = states.get(getattr(callback, "state_key", None)) or {}
        if history is not None and state.get("history") is not None:
            history.load_state_dict(state["history"])
        if state.get("probe") is not None:
            callback.probe.load_state_dict(state["probe"])


def probe_batches(job: ProbeJob, index: int, sync: Sync) -> dict[str, list[Batch]]:
    """Return this rank's share of probe ``index``'s batches, drawn as `ProbeCallback` draws them.

    Args:
        job: the job.
        index: position of the probe callback in ``job.callbacks``.
        sync: the ranks; rank ``r`` of ``W`` takes batches ``r, r + W, ...``.

    Returns:
        ``split -> [(inputs, targets)]`` on the module's device.

    Raises:
        ConfigError: when there are fewer batches than processes.
    """
    callback = job.callbacks[index]
    num_batches = int(callback.num_batches)
    if num_batches < sync.world_size:
        raise ConfigError(
            f"probes.{callback.probe.name}.num_batches: got {num_batches}; expected an int >= "
            f"the number of processes ({sync.world_size})"
        )
    adapter = getattr(callback, "batch_adapter", None) or default_batch_adapter
    device = next(iter(job.module.parameters())).device
    out: dict[str, list[Batch]] = {}
    for split in callback.splits:
        if (index, split) not in job._batches:
            loader = (
                job.datamodule.train_dataloader()
                if split == "train"
                else job.datamodule.val_dataloader()
            )
            job._batches[index, split] = sample_batches(
                loader, num_batches=num_batches, batch_size=callback.batch_size, seed=callback.seed
            )
        mine = job._batches[index, split][sync.rank :: sync.world_size]
        out[split] = [_to_device(adapter(batch), device) for batch in mine]
    return out


def measure(
    job: ProbeJob,
    index: int,
    meta: Mapping[str, Any],
    *,
    sync: Sync,
    anchors: Mapping[str, Params] | None = None,
    progress: bool = False,
    on_error: str = "raise",
    directory: Path | None = None,
) -> Any:
    """Measure the module with probe ``index`` and write its record (``meta.source``: lsuite-probe).

    Args:
        job: the job.
        index: position of the probe callback in ``job.callbacks``.
        meta: ``step``, ``epoch``, ``checkpoint`` and anything else for the record.
        sync: the ranks measuring together.
        anchors: other points for the probe (``start=`` of an interpolation); when None, the
            probe's point specs are resolved from the checkpoint's history or their files.
        progress: per-probe progress line (rank zero).
        on_error: ``"raise"`` or ``"warn"`` (a failure record is written, None returned).
        directory: where the record goes; ``job.directory`` when None.

    Returns:
        The probe's result, or None after a failure under ``on_error="warn"``.

    Raises:
        ConfigError: when a point spec cannot be resolved and ``on_error="raise"``.
    """
    callback = job.callbacks[index]
    probe = callback.probe
    full = {
        "probe": probe.name,
        "when": "checkpoint",
        "weights": "current",
        "world_size": sync.world_size,
        "source": SOURCE,
        **meta,
    }
    extra = {
        key: getattr(callback, key)
        for key in ("forward_fn", "probe_dtype")
        if getattr(callback, key, None) is not None
    }
    outputs = Outputs(directory or job.directory, plots=bool(getattr(callback, "plots", True)))
    network = probe_points.network(job.module)
    if anchors is None:
        dtype = resolve_probe_dtype(extra.get("probe_dtype"), network)
        try:
            anchors = probe_points.resolve(probe, network, job.histories[index], dtype)
        except ConfigError as error:
            if on_error == "raise":
                raise
            log.warning("probe %s: %s", probe.name, error)
            record = make_failure_record({**full, "kind": None, "seconds": 0.0}, error)
            publish(outputs, record, {"failed": 1.0}, sync=sync)
            return None
    return measure_module(
        probe,
        network,
        probe_batches(job, index, sync),
        loss_fn=getattr(callback, "loss_fn", None) or F.cross_entropy,
        bn_mode=getattr(callback, "bn_mode", "eval"),
        meta=full,
        seed=int(callback.seed),
        anchors=anchors,
        outputs=outputs,
        sync=sync,
        on_error=on_error,  # type: ignore[arg-type]
        progress=progress,
        **extra,
    )


def checkpoint_meta(checkpoint: Checkpoint) -> dict[str, Any]:
    """Return the record meta of a checkpoint: ``step``, ``epoch``, ``checkpoint`` (path)."""
    return {
        "step": checkpoint.step,
        "epoch": checkpoint.epoch,
        "checkpoint": str(checkpoint.path.resolve()),
    }


def trainable_params(module: nn.Module) -> Params:
    """Return copies of the trainable parameters of the network probes measure in ``module``.

    That network is ``module.probe_network()`` when the module defines it, else ``module``
    (the keys of a probe's point).
    """
    network = probe_points.network(module)
    return {n: p.detach().clone() for n, p in network.named_parameters() if p.requires_grad}


@contextmanager
def loaded(job: ProbeJob, checkpoint: Checkpoint) -> Iterator[dict[str, Any]]:
    """Load ``checkpoint`` into the job for the duration of the block.

    Args:
        job: the job.
        checkpoint: the file to load.

    Yields:
        The loaded checkpoint dict.

    Raises:
        ConfigError: when the file is no Lightning checkpoint.
    """
    content = read_checkpoint(checkpoint.path)
    if "state_dict" not in content:
        raise ConfigError(
            f"--ckpt: {str(checkpoint.path)!r} is no Lightning checkpoint (no 'state_dict'); use "
            "--weights FILE for a plain state dict"
        )
    load_checkpoint_into(job, content)
    yield content


def _to_device(batch: Batch, device: torch.device) -> Batch:
    inputs, targets = batch
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.to(device)
    return inputs, targets.to(device)


def probe_names(job: ProbeJob) -> Sequence[str]:
    """Return the names of the job's probes, in config order."""
    return [callback.probe.name for callback in job.callbacks]


__all__ = [
    "SOURCE",
    "ProbeJob",
    "build_job",
    "checkpoint_meta",
    "load_checkpoint_into",
    "loaded",
    "measure",
    "probe_batches",
    "probe_names",
    "trainable_params",
]
