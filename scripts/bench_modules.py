"""Benchmark one training epoch of the plain network against the multi-point modules.

Modules (the same network, data, batch size and optimizer, in one process):

1. ``plain``: `Classifier`, the network trained as usual;
2. ``line``: `Subspace` with 2 vertices (Wortsman et al.'s line, cosine regulariser on);
3. ``bezier``: `CurveModule`, a quadratic Bezier curve between two saved networks (H15's module);
4. ``fastfood``: `RandomSubspace` with the Fastfood projection at ``--dim`` (1000 by default).

Two loops (``--loop``):

- ``module`` (the default): every batch of the training split through ``training_step``,
  ``backward`` and the optimizer step (SGD with momentum), without Lightning's loop and with
  ``self.log`` a no-op, so the ratios show the modules' own cost (the stricter measure);
- ``lightning``: one epoch of ``Trainer.fit`` per repeat, what ``lsuite-train`` runs (its
  logging, hooks and optimizer closure; no logger, progress bar, checkpointing or validation),
  timed from ``on_train_epoch_start`` to ``on_train_epoch_end``.

Repeats are interleaved (plain, line, bezier, fastfood, plain, ...) and the medians printed with
their ratio to ``plain``, the time per step and the time per step over ``plain``. Targets (issue
13, "one training epoch"): line and bezier <= 1.3x, fastfood <= 2x.

Usage: ``python scripts/bench_modules.py [--smoke] [--model mlp|cnn|resnet] [--data digits|mnist1d]
[--repeats R] [--threads N] [--dim D] [--batch-size B] [--device cpu|cuda] [--clock wall|thread]
[--loop module|lightning]``.
``--clock thread`` times the CPU time of the main thread (single-threaded CPU runs only), which
other processes on a loaded machine barely disturb; ``wall`` (the default) is elapsed time.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lsuite.config.console import quiet_known_noise
from lsuite.model.classifier import Classifier
from lsuite.model.random_subspace import RandomSubspace
from lsuite.model.subspace import Subspace


def _data(name: str, batch_size: int, smoke: bool) -> tuple[list, tuple[int, ...]]:
    if name == "digits":
        from lsuite.data.digits import DigitsDataModule

        datamodule = DigitsDataModule(batch_size=batch_size)
    else:
        from lsuite.data.mnist1d import MNIST1DDataModule

        datamodule = MNIST1DDataModule(batch_size=batch_size)
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    return (batches[:2] if smoke else batches), tuple(datamodule.input_shape)


def _network(model: str, shape: tuple[int, ...]) -> nn.Module:
    if model == "mlp":
        from lsuite.model.mlp import MLP

        return MLP(input_shape=shape, num_classes=10)
    if model == "cnn":
        from lsuite.model.cnn import CNN

        return CNN(input_shape=shape, num_classes=10)
    from lsuite.model.resnet import ResNet

    return ResNet(input_shape=shape, num_classes=10)


def _modules(
    net: nn.Module, dim: int, folder: Path, quiet_log: bool = True
) -> dict[str, LightningModule]:
    optimizer = partial(torch.optim.SGD, lr=0.01, momentum=0.9)
    modules: dict[str, LightningModule] = {
        "plain": Classifier(copy.deepcopy(net), optimizer, 10),
        "line": Subspace(copy.deepcopy(net), optimizer, 10),
    }
    try:
        from lsuite.model.curve import CurveModule
    except ImportError:  # the curve module is not in this checkout
        CurveModule = None
    if CurveModule is not None:
        ends = []
        for seed in (1, 2):
            other = copy.deepcopy(net)
            torch.manual_seed(seed)
            for module in other.modules():
                if hasattr(module, "reset_parameters") and module is not other:
                    module.reset_parameters()
            ends.append(folder / f"end{seed}.pt")
            torch.save(other.state_dict(), ends[-1])
        modules["bezier"] = CurveModule(
            copy.deepcopy(net), optimizer, 10, start=str(ends[0]), end=str(ends[1])
        )
    modules["fastfood"] = RandomSubspace(copy.deepcopy(net), optimizer, 10, dim=dim)
    if quiet_log:
        for module in modules.values():
            module.log = lambda *args, **kwargs: None  # no Trainer: logging is not timed
    return modules


def _epoch(module: LightningModule, batches: list, device: torch.device) -> Callable[[], None]:
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    module.train()

    def run() -> None:
        for index, (inputs, targets) in enumerate(batches):
            optimizer.zero_grad(set_to_none=True)
            loss = module.training_step((inputs.to(device), targets.to(device)), index)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return run


class _EpochClock(Callback):
    """Record the time of each training epoch (``on_train_epoch_start`` to ``_end``)."""

    def __init__(
        self, clock: Callable[[], float], times: list[float], device: torch.device
    ) -> None:
        self.clock, self.times, self.device = clock, times, device

    def on_train_epoch_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.start = self.clock()

    def on_train_epoch_end(self, trainer: Trainer, module: LightningModule) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.times.append(self.clock() - self.start)


def _lightning_epoch(
    module: LightningModule,
    batches: list,
    device: torch.device,
    clock: Callable[[], float],
    times: list[float],
) -> Callable[[], None]:
    """Return a function that runs one epoch of ``Trainer.fit`` and appends its time."""
    data = TensorDataset(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    loader = DataLoader(data, batch_size=len(batches[0][0]))

    def run() -> None:
        trainer = Trainer(
            max_epochs=1,
            accelerator=device.type,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            callbacks=[_EpochClock(clock, times, device)],
        )
        trainer.fit(module, train_dataloaders=loader)

    return run


def main() -> None:
    """Parse the options, time the epochs and print the medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 batches, 1 repeat")
    parser.add_argument("--model", choices=["mlp", "cnn", "resnet"], default="mlp")
    parser.add_argument("--data", choices=["digits", "mnist1d"], default="digits")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dim", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clock", choices=["wall", "thread"], default="wall")
    parser.add_argument("--loop", choices=["module", "lightning"], default="module")
    args = parser.parse_args()
    if args.clock == "thread" and (args.threads != 1 or args.device != "cpu"):
        parser.error("--clock thread: only with --threads 1 --device cpu (one thread's CPU time)")
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batches, shape = _data(args.data, args.batch_size, args.smoke)
    torch.manual_seed(0)
    net = _network(args.model, shape)
    lightning = args.loop == "lightning"
    with tempfile.TemporaryDirectory() as folder:
        modules = _modules(net, args.dim, Path(folder), quiet_log=not lightning)
        times: dict[str, list[float]] = {name: [] for name in modules}
        if lightning:
            quiet_known_noise()
            logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
            warnings.filterwarnings("ignore", message=".*(val_dataloader|num_workers).*")
            runs = {
                name: _lightning_epoch(m, batches, device, clock, times[name])
                for name, m in modules.items()
            }
        else:
            runs = {name: _epoch(m.to(device), batches, device) for name, m in modules.items()}
        for run in runs.values():  # warm-up
            run()
        for values in times.values():
            values.clear()
        for _ in range(1 if args.smoke else args.repeats):
            for name, run in runs.items():
                start = clock()
                run()
                if not lightning:  # the Trainer's epoch clock appended its own time
                    times[name].append(clock() - start)
    size = sum(p.numel() for p in net.parameters())
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"device: {device} ({where or platform.machine()}), torch {torch.__version__}, "
        f"{args.threads} thread(s), {args.clock} clock, {args.loop} loop, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{args.model} on {args.data}: D = {size} parameters, {len(batches)} batches of "
        f"{args.batch_size}, d = {args.dim}, median of {len(times['plain'])} epochs"
    )
    plain = statistics.median(times["plain"])
    print(f"{'module':<10} {'epoch (s)':>10} {'x plain':>8} {'us/step':>8} {'+us/step':>9}  target")
    targets = {"line": "<= 1.3", "bezier": "<= 1.3", "fastfood": "<= 2"}
    for name, values in times.items():
        median = statistics.median(values)
        step, extra = median / len(batches) * 1e6, (median - plain) / len(batches) * 1e6
        print(
            f"{name:<10} {median:>10.4f} {median / plain:>8.2f} {step:>8.0f} {extra:>9.0f}  "
            f"{targets.get(name, '')}"
        )


if __name__ == "__main__":
    main()
