"""Schedule a probe in any Lightning Trainer; the measurement itself is `lsuite.session`'s."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

from lsuite.callbacks import probe_points
from lsuite.callbacks.probe_batches import find_loader, local_batches, sample_batches
from lsuite.callbacks.probe_outputs import (
    progress_target,
    records_root,
    trainer_outputs,
    trainer_sync,
)
from lsuite.callbacks.probe_schedule import check_schedule, weights_label
from lsuite.errors import ConfigError, require
from lsuite.functional.params import clone
from lsuite.probes.base import Probe, ProbeResult
from lsuite.probes.data_source import BatchAdapter, default_batch_adapter
from lsuite.probes.point import BatchNormMode, LossFn, make_skeleton, resolve_forward_fn
from lsuite.results.jsonl import read_records
from lsuite.session import measure_module, resolve_probe_dtype
from lsuite.session.dry_run import dry_run
from lsuite.session.guard import CHECK_ENV

__all__ = ["CHECK_ENV", "ProbeCallback"]

When = Literal["step", "epoch", "fit_end"]


class ProbeCallback(Callback):
    """Run a probe on a schedule during ``Trainer.fit``, without changing training.

    The probe sees a frozen copy of the network (``loss_fn(forward(x), y)``) on a fixed set of
    probe batches drawn by this callback's own seed from the run's datasets. The network is what
    the LightningModule's ``probe_network()`` returns when it has that method, else the
    LightningModule itself. Under DDP every rank measures its share of the batches and the
    probe's reductions are summed across ranks; only global rank zero writes
    ``<output dir>/probes/<name>.jsonl`` and logs ``probe/<name>/<field>`` to every logger.
    Weights, buffers, gradients, module modes, optimizer and RNG states are exactly as before
    after every measurement. Settings are checked at ``setup`` and by a dry run (forward and
    loss once on one probe batch) before the first training step.

    Args:
        probe: the measurement.
        every_n_epochs: measure after every n-th training epoch (None: never).
        every_n_train_steps: measure after every n-th optimizer step (None: never).
        on_fit_end: measure once more when fitting ends.
        data: split(s) of the probe batches, ``"train"``, ``"val"`` or a list; the first is primary.
        num_batches: number of probe batches per split (at least the number of ranks).
        batch_size: samples per probe batch; the split loader's batch size when None.
        seed: seed of the batch choice and of the probe's random draws.
        loss_fn: ``loss_fn(outputs, targets)`` (mean over the batch), as a callable, a loss
            module (``nn.CrossEntropyLoss(label_smoothing=0.1)``) or a dotted path;
            ``torch.nn.functional.cross_entropy`` when None.
        batch_adapter: maps a loader batch to ``(inputs, targets)``, callable or dotted path;
            the default takes ``batch[0], batch[1]`` (or ``x``/``y`` keys of a dict batch).
        bn_mode: ``"eval"`` (BatchNorm uses running statistics; default) or ``"train"`` (batch
            statistics of each probe batch); dropout is always off.
        output_dir: directory for ``probes/`` and ``plots/``. When None: the logger's run
            directory (``trainer.log_dir``, e.g. ``lightning_logs/version_N``) when the trainer
            has a logger, else ``trainer.default_root_dir`` (``lsuite-train`` passes its run
            directory).
        plots: render plots of records that have one into ``<output dir>/plots/``.
        on_error: ``"warn"`` (default): a failed measurement is a failure record, one warning
            and ``probe/<name>/failed = 1``, and training goes on; ``"raise"``: the run fails,
            naming the probe. The decision is the same on every rank.
        forward_fn: how to call the network on a batch's inputs: a callable
            ``(module, inputs) -> outputs``, a dotted path to one, or the name of a submodule
            (``"model"``) for a LightningModule without ``forward``; the module's own forward
            when None.
        probe_dtype: ``"float32"``, ``"float64"`` or None (the weights' dtype; 16-bit weights are
            measured in float32). Probes always compute outside autocast.
    """

    def __init__(
        self,
        probe: Probe,
        *,
        every_n_epochs: int | None = None,
        every_n_train_steps: int | None = None,
        on_fit_end: bool = True,
        data: str | Sequence[str] = "train",
        num_batches: int = 4,
        batch_size: int | None = None,
        seed: int = 0,
        loss_fn: LossFn | nn.Module | str | None = None,
        batch_adapter: BatchAdapter | str | None = None,
        bn_mode: BatchNormMode = "eval",
        output_dir: str | None = None,
        plots: bool = True,
        on_error: Literal["raise", "warn"] = "warn",
        forward_fn: Any = None,
        probe_dtype: str | None = None,
    ) -> None:
        require(isinstance(probe, Probe), "probe", type(probe).__name__, "an lsuite Probe")
        for key, value in (
            ("every_n_epochs", every_n_epochs),
            ("every_n_train_steps", every_n_train_steps),
        ):
            require(
                value is None or (isinstance(value, int) and value >= 1),
                key,
                value,
                "None or an int >= 1",
            )
        splits = [data] if isinstance(data, str) else list(data)
        for split in splits:
            require(split in ("train", "val"), "data", data, "'train', 'val' or a list of them")
        for split in probe.needs_splits:
            if split not in splits:
                splits.append(split)
        require(len(splits) == len(set(splits)), "data", data, "each split at most once")
        require(
            isinstance(num_batches, int) and num_batches >= 1,
            "num_batches",
            num_batches,
            "an int >= 1",
        )
        require(
            batch_size is None or batch_size >= 1, "batch_size", batch_size, "None or an int >= 1"
        )
        require(bn_mode in ("eval", "train"), "bn_mode", bn_mode, "'eval' or 'train'")
        require(on_error in ("raise", "warn"), "on_error", on_error, "'raise' or 'warn'")
        require(
            probe_dtype in (None, "float32", "float64"),
            "probe_dtype",
            probe_dtype,
            "'float32', 'float64' or null",
        )
        self.probe = probe
        self.every_n_epochs = every_n_epochs
        self.every_n_train_steps = every_n_train_steps
        self.on_fit_end_enabled = on_fit_end
        self.splits = splits
        self.num_batches = num_batches
        self.batch_size = batch_size
        self.seed = seed
        self.loss_fn: LossFn = _resolve(loss_fn, "loss_fn") or F.cross_entropy
        self.batch_adapter: BatchAdapter = (
            _resolve(batch_adapter, "batch_adapter") or default_batch_adapter
        )
        self.bn_mode: BatchNormMode = bn_mode
        self.output_dir = output_dir
        self.plots = plots
        self.on_error: Literal["raise", "warn"] = on_error
        self.forward_fn = resolve_forward_fn(forward_fn)
        self.probe_dtype = probe_dtype
        self.last_step = -1
        self.num_records = 0
        self.last_weights = "current"
        # (step, weights label) of every record in the file: a resumed run does not repeat them.
        self._recorded: set[tuple[int, str]] = set()
        self._batches: dict[str, list[Any]] = {}
        self._skeleton: nn.Module | None = None
        self._root: Path | None = None
        self._history = probe_points.make_history(probe)
        # (global step, epoch) of the last epoch end: a fit-end record at that step says that epoch.
        self._epoch_end: tuple[int, int] | None = None

    @property
    def state_key(self) -> str:
        """Key of this callback's state in checkpoints, unique per probe name."""
        return self._generate_state_key(probe=self.probe.name)

    @property
    def records_path(self) -> Path:
        """The probe's JSON-lines file."""
        if self._root is None:
            raise RuntimeError("ProbeCallback.records_path is known once the trainer is set up")
        return self._root / "probes" / f"{self.probe.name}.jsonl"

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Fix the output directory and check the settings against the trainer."""
        del pl_module
        self._root = records_root(trainer, self.output_dir)
        self._recorded = set()
        for raw in read_records(self.records_path):
            meta = raw.get("meta", raw)  # schema 1 records are flat
            if "step" in meta and meta.get("source") != "lsuite-probe":  # not this run's own
                self._recorded.add((int(meta["step"]), str(meta.get("weights", "current"))))
        if stage != "fit":
            return
        require(
            self.num_batches >= trainer.world_size,
            f"{self.probe.name}.num_batches",
            self.num_batches,
            f"an int >= the number of processes ({trainer.world_size})",
        )
        check_schedule(
            self.probe.name,
            every_n_epochs=self.every_n_epochs,
            every_n_train_steps=self.every_n_train_steps,
            on_fit_end=self.on_fit_end_enabled,
            max_epochs=trainer.max_epochs,
            max_steps=trainer.max_steps,
        )
        probe_points.check_points(self.probe, trainer.max_epochs, trainer.max_steps)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Show the probe the weights at the start of training."""
        if trainer.global_step == 0 and not trainer.fast_dev_run:
            self._observe(trainer, pl_module)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Dry-run the forward and loss on one probe batch before the first training step."""
        if trainer.fast_dev_run:
            return
        module = probe_points.network(pl_module)
        split = self.splits[0]
        raw = self._split_batches(trainer, split)[0]
        dry_run(
            self.probe.name,
            module,
            raw,
            batch_adapter=self.batch_adapter,
            to_device=lambda b: pl_module.transfer_batch_to_device(b, pl_module.device, 0),
            loss_fn=self.loss_fn,
            forward_fn=self.forward_fn,
            bn_mode=self.bn_mode,
            dtype=resolve_probe_dtype(self.probe_dtype, module),
            skeleton=self._get_skeleton(trainer, module),
        )

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Measure after every ``every_n_train_steps`` optimizer steps."""
        del outputs, batch, batch_idx
        n = self.every_n_train_steps
        if n is not None and trainer.global_step > 0 and trainer.global_step % n == 0:
            self._measure(trainer, pl_module, "step")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Show the probe the weights, and measure after every ``every_n_epochs`` epochs."""
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        self._epoch_end = (trainer.global_step, trainer.current_epoch)
        self._observe(trainer, pl_module)
        n = self.every_n_epochs
        if n is not None and (trainer.current_epoch + 1) % n == 0:
            self._measure(trainer, pl_module, "epoch")

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Measure once at the end of fitting, when enabled."""
        if self.on_fit_end_enabled:
            self._measure(trainer, pl_module, "fit_end")

    def state_dict(self) -> dict[str, Any]:
        """Return the schedule state, the weight history and the probe's own state."""
        return {
            "last_step": self.last_step,
            "last_weights": self.last_weights,
            "num_records": self.num_records,
            "epoch_end": self._epoch_end,
            "history": None if self._history is None else self._history.state_dict(),
            "probe": self.probe.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved by `state_dict`, so a resumed run keeps the schedule."""
        self.last_step = state_dict["last_step"]
        self.last_weights = state_dict.get("last_weights", "current")
        self.num_records = state_dict["num_records"]
        epoch_end = state_dict.get("epoch_end")
        self._epoch_end = None if epoch_end is None else (int(epoch_end[0]), int(epoch_end[1]))
        if self._history is not None and state_dict.get("history") is not None:
            self._history.load_state_dict(state_dict["history"])
        self.probe.load_state_dict(state_dict["probe"])

    def measure_now(self, trainer: Trainer, pl_module: LightningModule) -> ProbeResult | None:
        """Measure immediately (same rules as a scheduled measurement); for custom schedules.

        Returns:
            The result (on every rank), or None when skipped or failed under ``on_error="warn"``.
        """
        return self._measure(trainer, pl_module, "step")

    def _observe(self, trainer: Trainer, pl_module: LightningModule) -> None:
        module = probe_points.network(pl_module)
        step, epoch = trainer.global_step, trainer.current_epoch
        probe_points.observe(self._history, module, step=step, epoch=epoch)
        self.probe.observe(clone(probe_points.trainable(module)), step=step, epoch=epoch)

    def _should_skip(self, trainer: Trainer, step: int, weights: str) -> bool:
        """Return whether to skip this measurement; the same answer on every rank.

        Skipped: sanity checking, ``fast_dev_run``, and a (step, weights) pair measured already,
        by this run or by the run this one resumes (read from the records at setup).
        """
        if trainer.fast_dev_run or trainer.sanity_checking:
            return True
        key = (step, weights)
        return key == (self.last_step, self.last_weights) or key in self._recorded

    def _measure(
        self, trainer: Trainer, pl_module: LightningModule, when: When
    ) -> ProbeResult | None:
        step = trainer.global_step
        # One measurement per (step, weights): at fit end the averaged weights of SWA are new
        # weights even when an epoch-end record already exists at the same step.
        weights = weights_label(trainer, when)
        if self._should_skip(trainer, step, weights):
            return None
        if trainer.world_size > 1:
            # Collective order under DDP. Lightning computes the epoch-level metrics logged with
            # sync_dist (an all-reduce each) lazily, on first read, then caches them until the
            # next epoch; rank zero's progress bar reads them in its on_train_epoch_end while the
            # other ranks' bars are disabled and do not, so a probe's all-reduce on rank 1 met
            # rank 0's metric sync (the deadlock of issue 10 item 1). Reading them here, on
            # every rank, before the probe's first collective issues every metric sync in the
            # same order everywhere, whichever callbacks run before or after this one.
            _ = trainer.callback_metrics
        module = probe_points.network(pl_module)
        dtype = resolve_probe_dtype(self.probe_dtype, module)
        sync = trainer_sync(trainer)
        batches = {
            split: local_batches(
                self._split_batches(trainer, split),
                self.batch_adapter,
                pl_module,
                sync.rank,
                sync.world_size,
            )
            for split in self.splits
        }
        result = measure_module(
            self.probe,
            module,
            batches,
            loss_fn=self.loss_fn,
            forward_fn=self.forward_fn,
            bn_mode=self.bn_mode,
            probe_dtype=dtype,
            skeleton=self._get_skeleton(trainer, module),
            meta={
                "probe": self.probe.name,
                "step": step,
                "epoch": self._epoch_of(trainer, when),
                "when": when,
                "weights": weights,
                "world_size": trainer.world_size,
                "source": "callback",
            },
            seed=self.seed,
            anchors=probe_points.resolve(self.probe, module, self._history, dtype),
            outputs=trainer_outputs(trainer, self._root_dir(trainer), plots=self.plots),
            sync=sync,
            on_error=self.on_error,
            progress=progress_target(trainer, self.probe.name),
            optimizers=list(trainer.optimizers),
        )
        self.last_step = step
        self.last_weights = weights
        self.num_records += 1
        self._recorded.add((step, weights))
        return result

    def _epoch_of(self, trainer: Trainer, when: When) -> int:
        """Return the epoch of a record: a fit-end record at an epoch end's step says that epoch."""
        if when == "fit_end" and self._epoch_end is not None:
            step, epoch = self._epoch_end
            if step == trainer.global_step:
                return epoch
        return trainer.current_epoch

    def _root_dir(self, trainer: Trainer) -> Path:
        if self._root is None:
            self._root = records_root(trainer, self.output_dir)
        return self._root

    def _get_skeleton(self, trainer: Trainer, module: nn.Module) -> nn.Module:
        if self._skeleton is None:
            self._skeleton = make_skeleton(module, self.bn_mode, share=[trainer])
        return self._skeleton

    def _split_batches(self, trainer: Trainer, split: str) -> list[Any]:
        if split not in self._batches:
            loader = find_loader(trainer, split)
            self._batches[split] = sample_batches(
                loader, num_batches=self.num_batches, batch_size=self.batch_size, seed=self.seed
            )
        return self._batches[split]


def _resolve(value: Any, key: str) -> Any:
    """Return a callable given directly or as a dotted path ``package.module.name``."""
    if value is None or callable(value):
        return value
    if isinstance(value, str) and "." in value:
        module_name, _, attr = value.rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"{key}: got {value!r}; cannot import it ({error})") from error
    raise ConfigError(f"{key}: got {value!r}; expected a callable or a dotted path to one")
