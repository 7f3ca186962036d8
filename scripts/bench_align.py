"""Benchmark lsuite's weight matching against a plain-loop reference and ``rebasin`` (PyPI).

Models (every method sees the same pair, in one process):

1. ``mlp784``: two 784-512-512-512-10 MLPs at independent initialisations (the shape of Ainsworth
   et al.'s MNIST MLP);
2. ``mlp-digits``: two 64-512-512-512-10 MLPs trained from different seeds on 1,500 sklearn digits,
   with the test loss along the straight line between them: naive, weight matching (lsuite,
   reference, rebasin), activation matching, and weight matching + REPAIR;
3. ``resnet20x4``: two ResNet-20 (BatchNorm, width x4) at independent initialisations, 3x32x32.

The reference is Ainsworth et al.'s ``weight_matching`` loop written out in torch: every group's
score matrix is rebuilt from fully re-permuted tensors at every step. lsuite's version caches the
score blocks whose other permutations did not change, and runs the descent on one torch
intra-op thread (``weight_matching(threads=1)``, the default: the products are small and half the
time is scipy's single-threaded assignment, so more threads mostly wait on each other, badly so
on a loaded machine); the row "lsuite, --threads threads" runs it with ``threads=None`` at the
script's setting, as the reference and rebasin run. Times are medians of interleaved repeats in
seconds (spec tracing is timed separately); ratios are to lsuite.

Usage: ``python scripts/bench_align.py [--smoke] [--threads N] [--repeats R] [--skip-rebasin]``.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from lsuite.align import (
    apply_permutation,
    interpolated_state,
    permutation_spec,
    weight_matching,
)
from lsuite.align.activation_matching import activation_matching
from lsuite.align.apply import permute_axis
from lsuite.align.spec import PermutationSpec
from lsuite.align.weight_matching import channel_matrix
from lsuite.model.mlp import MLP
from lsuite.model.resnet import ResNet


def reference_weight_matching(
    spec: PermutationSpec,
    state_a: Mapping[str, Tensor],
    state_b: Mapping[str, Tensor],
    max_iter: int = 100,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Ainsworth et al.'s coordinate descent as a plain loop (no caching), for comparison."""
    names = list(spec.groups)
    perms = {n: torch.arange(g.size) for n, g in spec.groups.items()}
    on_key: dict[str, list[tuple[str, int, int]]] = {}
    for name, group in spec.groups.items():
        for ref in group.axes:
            on_key.setdefault(ref.name, []).append((name, ref.axis, ref.inner))

    def permuted(key: str, except_axis: int) -> Tensor:
        w = state_b[key]
        for name, axis, inner in on_key[key]:
            if axis != except_axis:
                w = permute_axis(w, axis, perms[name], inner)
        return w

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(max_iter):
            progress = False
            for index in torch.randperm(len(names), generator=generator).tolist():
                name = names[index]
                group = spec.groups[name]
                scores = torch.zeros(group.size, group.size, dtype=torch.float64)
                for ref in group.axes:
                    w_a = channel_matrix(state_a[ref.name], ref, group.size)
                    w_b = channel_matrix(permuted(ref.name, ref.axis), ref, group.size)
                    scores += (w_a @ w_b.T).double()
                _, cols = linear_sum_assignment(scores.numpy(), maximize=True)
                cols = torch.from_numpy(cols)
                old = scores[torch.arange(group.size), perms[name]].sum()
                new = scores[torch.arange(group.size), cols].sum()
                progress = progress or bool(new > old + 1e-6 * old.abs())
                perms[name] = cols
            if not progress:
                break
    return perms


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Run ``fn`` once and return (seconds, result)."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def digits(smoke: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Return sklearn digits as train/test tensors (inputs scaled to [0, 1])."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    train = 300 if smoke else 1500
    return x[:train], y[:train], x[1500:], y[1500:]


def train_mlp(width: int, seed: int, data: tuple[Tensor, ...], epochs: int) -> nn.Module:
    """Train an MLP on digits with SGD (lr 0.1, momentum 0.9, batch 64) from ``seed``."""
    x, y = data[0], data[1]
    torch.manual_seed(seed)
    model = MLP((64,), 10, width=width, depth=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


def line_losses(
    model: nn.Module, states: list[Mapping[str, Tensor]], x: Tensor, y: Tensor
) -> list[float]:
    """Return the test loss of ``model`` holding each state."""
    out = []
    for state in states:
        net = copy.deepcopy(model)
        net.load_state_dict(state)
        with torch.no_grad():
            out.append(F.cross_entropy(net.eval()(x), y).item())
    return out


def barrier_row(label: str, losses: list[float]) -> str:
    """Format one line of the barrier table: barrier, midpoint and endpoint losses."""
    barrier = max(losses) - 0.5 * (losses[0] + losses[-1])
    middle = losses[len(losses) // 2]
    return f"| {label} | {barrier:.4f} | {middle:.4f} | {losses[0]:.4f} / {losses[-1]:.4f} |"


def rebasin_align(a: nn.Module, b: nn.Module, x: Tensor) -> nn.Module:
    """Align a copy of ``b`` to ``a`` with rebasin's PermutationCoordinateDescent."""
    from rebasin import PermutationCoordinateDescent

    b = copy.deepcopy(b)
    PermutationCoordinateDescent(a, b, x).rebasin()
    return b


def bench_pair(
    label: str,
    a: nn.Module,
    b: nn.Module,
    x: Tensor,
    repeats: int,
    use_rebasin: bool,
) -> dict[str, object]:
    """Time spec tracing, lsuite, the reference and rebasin on one pair; print a table."""
    trace_s, spec = timed(lambda: permutation_spec(a, x))
    sa, sb = a.state_dict(), b.state_dict()
    threads = torch.get_num_threads()
    at_threads = f"lsuite weight_matching, {threads} threads"
    times: dict[str, list[float]] = {"lsuite weight_matching": [], "plain-loop reference": []}
    if threads != 1:
        times[at_threads] = []
    if use_rebasin:
        times["rebasin PermutationCoordinateDescent"] = []
    out: dict[str, object] = {"spec": spec}
    for _ in range(repeats):
        seconds, result = timed(lambda: weight_matching(spec, sa, sb))
        times["lsuite weight_matching"].append(seconds)
        out["lsuite"] = result
        if threads != 1:
            seconds, _ = timed(lambda: weight_matching(spec, sa, sb, threads=None))
            times[at_threads].append(seconds)
        seconds, perms = timed(lambda: reference_weight_matching(spec, sa, sb))
        times["plain-loop reference"].append(seconds)
        out["reference"] = perms
        if use_rebasin:
            seconds, module = timed(lambda: rebasin_align(a, b, x))
            times["rebasin PermutationCoordinateDescent"].append(seconds)
            out["rebasin"] = module
    base = statistics.median(times["lsuite weight_matching"])
    lsuite = out["lsuite"]
    print(
        f"\n## {label}: {sum(v.numel() for v in sa.values()):,} numbers, {len(spec.groups)} groups"
    )
    print(f"spec tracing (permutation_spec): {trace_s:.3f} s; lsuite sweeps: {lsuite.iterations}")
    print("| method | median s | x lsuite |")
    print("|---|---|---|")
    for method, values in times.items():
        median = statistics.median(values)
        print(f"| {method} | {median:.3f} | {median / base:.2f} |")
    same = all(torch.equal(out["reference"][k], lsuite.perms[k]) for k in lsuite.perms)
    print(f"reference finds the same permutations as lsuite: {same}")
    return out


def main() -> None:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models, runs in seconds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-rebasin", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    repeats = 1 if args.smoke else args.repeats
    width = 32 if args.smoke else 512
    have_rebasin = importlib.util.find_spec("rebasin") is not None
    use_rebasin = have_rebasin and not args.skip_rebasin and not args.smoke
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if "model name" in line]
        cpu = names[0] if names else cpu
    print(f"# bench_align: torch {torch.__version__}, {args.threads} threads, CPU: {cpu}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    if not have_rebasin:
        print("skipped: rebasin not installed (pip install --no-deps rebasin torchview graphviz)")
    elif not use_rebasin:
        print("skipped: rebasin (--smoke or --skip-rebasin)")

    torch.manual_seed(0)
    pair = [MLP((1, 28, 28), 10, width=width, depth=3).eval() for _ in range(2)]
    bench_pair("mlp784", *pair, torch.randn(4, 1, 28, 28), repeats, use_rebasin)

    data = digits(args.smoke)
    epochs = 1 if args.smoke else 20
    a, b = (train_mlp(width, seed, data, epochs) for seed in (1, 2))
    result = bench_pair("mlp-digits (trained)", a, b, data[0][:4], repeats, use_rebasin)
    spec, sa, sb = result["spec"], a.state_dict(), b.state_dict()
    alphas = torch.linspace(0, 1, 5 if args.smoke else 25).tolist()
    x_test, y_test = data[2], data[3]
    batches = [(data[0][i : i + 256], None) for i in range(0, len(data[0]), 256)]
    wm = apply_permutation(spec, result["lsuite"].perms, sb)
    am = apply_permutation(spec, activation_matching(spec, a, b, batches).perms, sb)
    curves = {
        "naive": [interpolated_state(a, sa, sb, t) for t in alphas],
        "weight matching (lsuite)": [interpolated_state(a, sa, wm, t) for t in alphas],
        "weight matching (reference)": [
            interpolated_state(a, sa, apply_permutation(spec, result["reference"], sb), t)
            for t in alphas
        ],
        "activation matching (lsuite)": [interpolated_state(a, sa, am, t) for t in alphas],
        "weight matching + REPAIR (lsuite)": [
            interpolated_state(a, sa, wm, t, batches, repair="repair", spec=spec) for t in alphas
        ],
    }
    if use_rebasin:
        other = result["rebasin"].state_dict()
        curves["weight matching (rebasin)"] = [interpolated_state(a, sa, other, t) for t in alphas]
    print(
        f"\n## test loss on the line, mlp-digits ({len(alphas)} alphas, {len(x_test)} test digits)"
    )
    print("| curve | barrier | midpoint loss | endpoint losses |")
    print("|---|---|---|---|")
    for label, states in curves.items():
        print(barrier_row(label, line_losses(a, states, x_test, y_test)))

    torch.manual_seed(0)
    scale, shape = (0.25, (3, 8, 8)) if args.smoke else (4.0, (3, 32, 32))
    nets = [ResNet(shape, 10, depth=20, width=scale).eval() for _ in range(2)]
    bench_pair(
        "resnet20x4" if not args.smoke else "resnet20",
        *nets,
        torch.randn(4, *shape),
        repeats,
        use_rebasin,
    )
    print(f"\ntotal {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
