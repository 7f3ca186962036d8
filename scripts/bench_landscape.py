"""Benchmark lsuite's loss-landscape sections against loss-landscapes in one process.

For an MLP on sklearn digits and a ResNet-20 on CIFAR-sized random input, times a 21 x 21 plane
(loss-landscapes ``random_plane`` vs lsuite on the same filter-normalised directions, rebuilt with
loss-landscapes' own functions and seed) and a 51-point interpolation (``linear_interpolation``
vs `lsuite.probes.interpolation.Interpolation`), on the same model and batch. Prints medians,
the cost per grid point in forward-pass equivalents (time per point / one ``no_grad`` forward of
the batch) and the ratio to loss-landscapes, plus the per-point cost of lsuite's two evaluation
modes (``loop`` and ``vmap``) next to the one ``batching="auto"`` picks.

Usage: ``python scripts/bench_landscape.py [--smoke] [--repeats N] [--threads T]``.
``--smoke`` uses tiny models and grids and finishes in seconds.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lsuite.evaluate import AffinePoints, choose_batching, evaluate_points
from lsuite.probes.data_source import DataSource
from lsuite.probes.interpolation import Interpolation
from lsuite.probes.plane import section_values
from lsuite.probes.point import snapshot


@dataclass
class Case:
    """One model with its batch and a second model for the interpolation."""

    name: str
    model: nn.Module
    other: nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    note: str


def digits_mlp(smoke: bool) -> Case:
    """MLP 64-128-128-10 trained briefly on sklearn digits (two seeds), batch of 256."""
    from lsuite.model.mlp import MLP

    if smoke:  # random digits-shaped data: skips importing scikit-learn
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(1600, 64, generator=g), torch.randint(0, 10, (1600,), generator=g)
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
        y = torch.tensor(digits.target)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = MLP((64,), 10, width=128, depth=2)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(5 if smoke else 150):
            optimizer.zero_grad()
            F.cross_entropy(model(x[:1500]), y[:1500]).backward()
            optimizer.step()
        models.append(model.eval())
    batch = 32 if smoke else 256
    note = "MLP 64-128-128-10, digits, trained (Adam, 2 seeds)"
    return Case("mlp", models[0], models[1], x[1500 : 1500 + batch], y[1500 : 1500 + batch], note)


def resnet(smoke: bool) -> Case:
    """ResNet-20 (or a small conv+BN net when absent), random 3x32x32 batch, one SGD step."""
    try:
        from lsuite.model.resnet import ResNet

        def make(seed: int) -> nn.Module:
            torch.manual_seed(seed)
            if smoke:
                return ResNet((3, 8, 8), 10, depth=8, width=0.25)
            return ResNet((3, 32, 32), 10, depth=20)

        note = "ResNet-20 (BatchNorm, eval mode)" if not smoke else "ResNet-8 x0.25 (smoke)"
    except ImportError:

        def make(seed: int) -> nn.Module:
            torch.manual_seed(seed)
            return nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1),
                nn.BatchNorm2d(16),
                nn.ReLU(),
                nn.Conv2d(16, 32, 3, padding=1, stride=2),
                nn.BatchNorm2d(32),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(32, 10),
            )

        note = "conv+BN net (lsuite.model.resnet missing)"
    size = 8 if smoke else 32
    batch = 8 if smoke else 128
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    models = []
    for seed in (0, 1):
        model = make(seed)
        # one SGD step: loss-landscapes' filter normalisation divides by zero on the all-zero
        # BatchNorm biases of an untrained net (baselines.md 7.3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
        models.append(model.eval())
    return Case("resnet", models[0], models[1], x, y, note + ", 1 SGD step")


def loss_landscapes_directions(
    model: nn.Module, seed: int, steps: int, distance: float = 1.0
) -> list[dict[str, torch.Tensor]]:
    """Rebuild ``random_plane``'s two directions (same seed and library functions)."""
    from loss_landscapes.model_interface.model_parameters import orthogonal_to, rand_u_like
    from loss_landscapes.model_interface.model_wrapper import wrap_model

    torch.manual_seed(seed)
    start = wrap_model(copy.deepcopy(model)).get_module_parameters()
    one = rand_u_like(start)
    two = orthogonal_to(one)
    out = []
    for direction in (one, two):
        direction.filter_normalize_(start)
        direction.mul_(((start.model_norm() / distance) / steps) / direction.model_norm())
        names = [n for n, _ in model.named_parameters()]
        out.append({n: p.detach().clone() for n, p in zip(names, direction, strict=True)})
    return out


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Return the wall and process CPU time of one call of ``fn``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def medians(times: list[tuple[float, float]]) -> tuple[float, float]:
    """Return the median wall and median CPU time."""
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def bench_case(
    case: Case, steps: int, points: int, repeats: int, warm_up: bool
) -> list[tuple[str, ...]]:
    """Time every method on one case; return table rows.

    Methods run interleaved (loss-landscapes, lsuite, forward reference) ``repeats`` times,
    after one untimed call of each when ``warm_up`` (the forward reference is always warmed).
    """
    import loss_landscapes
    from loss_landscapes.metrics import Loss

    model, x, y = case.model, case.inputs, case.targets
    metric = Loss(F.cross_entropy, x, y)
    point = snapshot(model, F.cross_entropy)
    data = {"train": DataSource([(x, y)])}

    def forward() -> tuple[float, float]:
        """Median wall and CPU time of one of 30 no_grad forwards."""
        with torch.no_grad():
            return medians([timed(lambda: model(x)) for _ in range(30)])

    forward()
    forward_times = [forward()]
    half = steps // 2
    axis = [float(i - half) for i in range(steps)]  # symmetric, contains 0
    directions = loss_landscapes_directions(model, seed=0, steps=steps)
    origin = point.params

    def ll_plane() -> None:
        torch.manual_seed(0)
        loss_landscapes.random_plane(
            model, metric, distance=1, steps=steps, normalization="filter", deepcopy_model=True
        )

    chosen: list[str] = []

    def own_plane() -> None:
        _, mode = section_values(point, data, origin, (directions[0], directions[1]), axis, axis)
        chosen.append(mode)

    probe = Interpolation(num_points=points)

    def ll_line() -> None:
        loss_landscapes.linear_interpolation(
            case.other, model, metric, steps=points, deepcopy_model=True
        )

    def own_line() -> None:
        probe.run(
            point, data, generator=torch.Generator(), start=dict(case.other.named_parameters())
        )

    rows = []
    grid_points = {"plane": steps * steps, "line": points}
    methods = {"plane": (ll_plane, own_plane), "line": (ll_line, own_line)}
    for section, (theirs, ours) in methods.items():
        times_theirs, times_ours = [], []
        if warm_up:
            theirs()
            ours()
        for _ in range(repeats):  # interleaved, so load changes hit all three alike
            forward_times.append(forward())
            times_theirs.append(timed(theirs))
            times_ours.append(timed(ours))
        n = grid_points[section]
        forward_time = medians(forward_times)
        t_theirs, t_ours = medians(times_theirs), medians(times_ours)
        label = f"{steps}x{steps} plane" if section == "plane" else f"{points}-point interpolation"
        for method, (wall, cpu) in (("loss-landscapes", t_theirs), ("lsuite", t_ours)):
            rows.append(
                (
                    case.name,
                    label,
                    method,
                    f"{wall:.3f}",
                    f"{wall / n * 1e3:.2f}",
                    f"{wall / n / forward_time[0]:.2f}",
                    f"{cpu / n / forward_time[1]:.2f}",
                    f"{wall / t_theirs[0]:.2f}",
                    f"{cpu / t_theirs[1]:.2f}",
                )
            )
    forward_time = medians(forward_times)
    rows.append(_modes_row(case, point, data, directions, forward_time, repeats, warm_up, chosen))
    forward_ms = f"{forward_time[0] * 1e3:.3f} ms wall, {forward_time[1] * 1e3:.3f} ms CPU"
    return [("# forward", case.name, forward_ms, case.note), *rows]


def _modes_row(
    case: Case,
    point: object,
    data: dict[str, DataSource],
    directions: list[dict[str, torch.Tensor]],
    forward_time: tuple[float, float],
    repeats: int,
    warm_up: bool,
    chosen: list[str],
) -> tuple[str, ...]:
    """Per-point cost of ``loop`` and ``vmap`` on a 3 x 3 sub-grid, and the ``auto`` choice."""
    from lsuite.functional.params import flatten

    grid = torch.cartesian_prod(torch.linspace(-2, 2, 3), torch.linspace(-2, 2, 3)).double()
    stacked = torch.stack([flatten(d) for d in directions])
    points = AffinePoints(flatten(point.params), stacked, grid)  # type: ignore[attr-defined]
    costs: dict[str, str] = {}
    for mode in ("loop", "vmap"):

        def run(mode: str = mode) -> None:
            evaluate_points(point, data, points, batching=mode)  # type: ignore[arg-type]

        if warm_up:
            run()
        wall, cpu = medians([timed(run) for _ in range(max(1, repeats))])
        per_point = (wall / len(points) / forward_time[0], cpu / len(points) / forward_time[1])
        costs[mode] = f"{per_point[0]:.2f} ({per_point[1]:.2f} CPU)"
    rule, chunk = choose_batching(point, data["train"].batches, 441)  # type: ignore[arg-type]
    rule = f"{rule} (chunk {chunk})"
    picks = ", ".join(f"{m} x{chosen.count(m)}" for m in sorted(set(chosen)))
    return (
        "# modes",
        case.name,
        f"loop {costs['loop']},",
        f"vmap {costs['vmap']} fwd-eq/pt on 3x3;",
        f"auto: {rule}; plane runs used {picks}",
    )


def device_name() -> str:
    """Return the CPU model and thread count."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"CPU {name}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} threads"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models and grids (seconds)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per method")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--only", choices=("mlp", "resnet"), default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    steps, points = (3, 5) if args.smoke else (21, 51)
    print(f"device: {device_name()}")
    print(
        f"plane: {steps}x{steps}; lsuite grid symmetric with the centre (coordinates "
        f"{-(steps // 2)}..{steps // 2} steps), loss-landscapes' zig-zag grid without it; "
        f"interpolation: {points} points"
    )
    header = (
        "model",
        "section",
        "method",
        "median s",
        "ms/point",
        "fwd-eq/pt",
        "fwd-eq/pt (CPU)",
        "x ll",
        "x ll (CPU)",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    builders = {"mlp": digits_mlp, "resnet": resnet}
    for name, build in builders.items():
        if args.only and name != args.only:
            continue
        case = build(args.smoke)
        repeats = args.repeats or (1 if args.smoke else (2 if name == "resnet" else 7))
        warm_up = name == "mlp" and not args.smoke  # a ResNet plane is warm after one point
        for row in bench_case(case, steps, points, repeats, warm_up):
            if row[0].startswith("#"):
                print(" ".join(row))
            else:
                print("| " + " | ".join(row) + " |")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
