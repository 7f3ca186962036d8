"""Schedule a probe in any Lightning Trainer; write its records and log its scalars."""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn

from lsuite.callbacks.probe_batches import find_loader, local_batches, sample_batches
from lsuite.callbacks.probe_outputs import publish
from lsuite.callbacks.swa import holds_average
from lsuite.callbacks.training_state import preserved_training_state
from lsuite.errors import ConfigError, require
from lsuite.functional.params import clone
from lsuite.probes.base import Probe, ProbeResult, to_jsonable
from lsuite.probes.data_source import BatchAdapter, DataSource, default_batch_adapter
from lsuite.probes.point import BatchNormMode, LossFn, make_skeleton, snapshot
from lsuite.results.jsonl import read_records

log = logging.getLogger(__name__)

CHECK_ENV = "LSUITE_CHECK_PROBES"
"""Set to ``1`` to compare the full training state before and after every probe (tests do)."""

When = Literal["step", "epoch", "fit_end"]


class ProbeCallback(Callback):
    """Run a probe on a schedule during ``Trainer.fit``, without changing training.

    The probe sees a frozen copy of the LightningModule (``loss_fn(pl_module(x), y)``) on a fixed
    set of probe batches drawn by this callback's own seed from the run's datasets. Under DDP
    every rank measures its share of the batches and the probe's reductions are summed across
    ranks; only global rank zero writes ``<output_dir>/probes/<name>.jsonl`` and logs
    ``probe/<name>/<field>`` to every logger. Weights, buffers, gradients, module modes, optimizer
    and RNG states are exactly as before after every measurement.

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
        output_dir: directory for ``probes/`` and ``plots/``; ``trainer.default_root_dir`` when
            None (``lsuite-train`` sets it to the run directory).
        plots: render plots of records that have one into ``<output_dir>/plots/``.
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
        self.last_step = -1
        self.num_records = 0
        self.last_weights = "current"
        # (step, weights label) of every record in the file: a resumed run does not repeat them.
        self._recorded: set[tuple[int, str]] = set()
        self._batches: dict[str, list[Any]] = {}
        self._skeleton: torch.nn.Module | None = None
        self._root: Path | None = None

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
        """Fix the output directory and check the batch count against the number of ranks."""
        del pl_module, stage
        self._root = Path(self.output_dir or trainer.default_root_dir)
        require(
            self.num_batches >= trainer.world_size,
            "num_batches",
            self.num_batches,
            f"an int >= the number of processes ({trainer.world_size})",
        )
        self._recorded = {
            (r["step"], r.get("weights", "current"))
            for r in read_records(self.records_path)
            if "step" in r
        }

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Show the probe the weights at the start of training."""
        if trainer.global_step == 0 and not trainer.fast_dev_run:
            self._observe(trainer, pl_module)

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
        self._observe(trainer, pl_module)
        n = self.every_n_epochs
        if n is not None and (trainer.current_epoch + 1) % n == 0:
            self._measure(trainer, pl_module, "epoch")

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Measure once at the end of fitting, when enabled."""
        if self.on_fit_end_enabled:
            self._measure(trainer, pl_module, "fit_end")

    def state_dict(self) -> dict[str, Any]:
        """Return the schedule state and the probe's own state."""
        return {
            "last_step": self.last_step,
            "last_weights": self.last_weights,
            "num_records": self.num_records,
            "probe": self.probe.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved by `state_dict`, so a resumed run keeps the schedule."""
        self.last_step = state_dict["last_step"]
        self.last_weights = state_dict.get("last_weights", "current")
        self.num_records = state_dict["num_records"]
        self.probe.load_state_dict(state_dict["probe"])

    def measure_now(self, trainer: Trainer, pl_module: LightningModule) -> ProbeResult | None:
        """Measure immediately (same rules as a scheduled measurement); for custom schedules.

        Returns:
            The result (on every rank), or None when skipped.
        """
        return self._measure(trainer, pl_module, "step")

    def _observe(self, trainer: Trainer, pl_module: LightningModule) -> None:
        params = {n: p for n, p in pl_module.named_parameters() if p.requires_grad}
        self.probe.observe(clone(params), step=trainer.global_step, epoch=trainer.current_epoch)

    def _measure(
        self, trainer: Trainer, pl_module: LightningModule, when: When
    ) -> ProbeResult | None:
        step = trainer.global_step
        if trainer.fast_dev_run or trainer.sanity_checking:
            return None
        # One measurement per (step, weights): at fit end the averaged weights of SWA are new
        # weights even when an epoch-end record already exists at the same step.
        weights = _weights_label(trainer, when)
        if (step, weights) == (self.last_step, self.last_weights) or (
            step,
            weights,
        ) in self._recorded:
            return None
        start = time.perf_counter()
        optimizers = list(trainer.optimizers)
        check = os.environ.get(CHECK_ENV, "") == "1"
        with preserved_training_state(pl_module, optimizers, check=check), torch.enable_grad():
            data = self._data(trainer, pl_module)
            if self._skeleton is None:
                self._skeleton = make_skeleton(pl_module, self.bn_mode, share=[trainer])
            point = snapshot(pl_module, self.loss_fn, bn_mode=self.bn_mode, skeleton=self._skeleton)
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
            result = self.probe.run(point, data, generator=generator)
        record = {
            "probe": self.probe.name,
            "kind": type(result).__name__,
            "step": step,
            "epoch": trainer.current_epoch,
            "when": when,
            "weights": weights,
            "seconds": time.perf_counter() - start,
            "world_size": trainer.world_size,
            **result.to_dict(),
            "scalars": to_jsonable(result.scalars()),
        }
        publish(trainer, self.records_path, record, result.scalars(), plots=self.plots)
        self.last_step = step
        self.last_weights = weights
        self.num_records += 1
        self._recorded.add((step, weights))
        return result

    def _data(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, DataSource]:
        world, rank = trainer.world_size, trainer.global_rank
        reduce_sum: Callable[[Tensor], Tensor] | None = None
        if world > 1:

            def reduce_sum(t: Tensor) -> Tensor:
                return trainer.strategy.reduce(t, reduce_op="sum")

        out: dict[str, DataSource] = {}
        for split in self.splits:
            if split not in self._batches:
                loader = find_loader(trainer, split)
                self._batches[split] = sample_batches(
                    loader, num_batches=self.num_batches, batch_size=self.batch_size, seed=self.seed
                )
            mine = local_batches(self._batches[split], self.batch_adapter, pl_module, rank, world)
            out[split] = DataSource(
                mine, reduce_sum=reduce_sum, name=split, world_size=world, rank=rank
            )
        return out


def _weights_label(trainer: Trainer, when: When) -> str:
    """Say which weights were measured: ``swa_average`` once weight averaging loaded its average."""
    fit_ended = when == "fit_end"
    if any(holds_average(c, trainer, fit_ended=fit_ended) for c in trainer.callbacks):
        return "swa_average"
    return "current"


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
