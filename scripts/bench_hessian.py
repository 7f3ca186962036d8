"""Benchmark lsuite's Hessian probes against PyHessian, hessian-eigenthings and curvlinops.

Every library runs on the same model and batch in one process (models in eval mode, because
PyHessian forces it). Three tables per model:

1. the cost of one Hessian-vector product (HVP) in units of one gradient (forward + backward);
2. the wall time to a trace within 1% of a reference: budgets double until the median absolute
   relative error over the seeds is at most 1%;
3. the wall time to the top eigenvalue within 1e-3 relative error: each method walks a ladder
   of settings (tolerance or iterations) and the first one within 1e-3 on every seed counts.

Models: an MLP 64-128-128-10 trained briefly on sklearn digits (batch 256 of the digits) and a
ResNet-20 with BatchNorm on random CIFAR-sized input (batch 128). ``--smoke`` shrinks everything
so the script runs in seconds.

Usage: ``python scripts/bench_hessian.py [--smoke] [--repeats N] [--skip-resnet]``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsuite.linalg.eigenpairs import extreme_eigenpairs
from lsuite.linalg.trace_estimators import hutchinson, hutchpp
from lsuite.probes.data_source import DataSource
from lsuite.probes.hessian_operator import HessianOperator
from lsuite.probes.point import snapshot

PEERS = {
    "PyHessian": "pyhessian",
    "hessian-eigenthings": "hessian_eigenthings",
    "curvlinops": "curvlinops",
}


@dataclasses.dataclass
class Case:
    """One model and batch with the budgets the benchmark may spend on it."""

    name: str
    model: nn.Module
    inputs: Tensor
    targets: Tensor
    repeats: int
    trace_budgets: list[int]
    trace_seeds: int
    exact_trace: bool
    trace_reference_matvecs: int
    eig_seeds: int
    eig_steps: list[int]


def load_peers() -> dict[str, ModuleType | None]:
    """Import each peer library, or note that it is missing."""
    out: dict[str, ModuleType | None] = {}
    for label, module in PEERS.items():
        try:
            out[label] = importlib.import_module(module)
        except ImportError:
            out[label] = None
            print(f"skipped: {label} not installed")
    return out


def device_line() -> str:
    """Describe the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU: {cpu}, "
        f"GPU: {gpu} (all timings on CPU)"
    )


def train_mlp(width: int, epochs: int, num_train: int) -> tuple[nn.Module, Tensor, Tensor]:
    """Train an MLP on sklearn digits briefly; return it (eval mode) and the digits."""
    from sklearn.datasets import load_digits

    from lsuite.model.mlp import MLP

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    model = MLP((64,), 10, width=width, depth=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for idx in torch.randperm(num_train).split(128):
            optimizer.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model.eval(), x, y


def make_cases(smoke: bool, skip_resnet: bool) -> list[Case]:
    """Build the benchmark's models and batches."""
    from lsuite.model.resnet import ResNet

    torch.manual_seed(0)
    cases: list[Case] = []
    if smoke:
        mlp, x, y = train_mlp(width=16, epochs=2, num_train=256)
        cases.append(Case("MLP 64-16-16-10 (smoke)", mlp, x[:64], y[:64], 3, [6, 12, 24], 2,
                          True, 0, 1, [4, 8, 16]))
        if not skip_resnet:
            net = ResNet((3, 8, 8), 10, depth=8, width=0.25).eval()
            cases.append(Case("ResNet-8 x0.25 (smoke)", net, torch.randn(8, 3, 8, 8),
                              torch.randint(0, 10, (8,)), 2, [6, 12], 1, False, 48, 1, [4, 8]))
        return cases
    mlp, x, y = train_mlp(width=128, epochs=30, num_train=1500)
    cases.append(Case("MLP 64-128-128-10, digits, B=256", mlp, x[1500:1756], y[1500:1756], 21,
                      [24, 48, 96, 192, 384, 768, 1536], 3, True, 0, 3,
                      [4, 6, 8, 10, 12, 16, 20, 30, 40, 60]))
    if not skip_resnet:
        net = ResNet((3, 32, 32), 10, depth=20).eval()
        cases.append(Case("ResNet-20 (BatchNorm, eval), random 3x32x32, B=128", net,
                          torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,)), 5,
                          [], 1, False, 0, 1, [4, 6, 8, 10, 12, 16, 20, 30]))
    return cases


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Return the median seconds of each function, timed round-robin so drift hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def lsuite_operator(case: Case, engine: str = "reuse") -> HessianOperator:
    point = snapshot(case.model, F.cross_entropy)
    return HessianOperator(point, DataSource([(case.inputs, case.targets)]), engine=engine)


def hvp_table(case: Case, peers: dict[str, ModuleType | None]) -> list[tuple[str, float, str]]:
    """Time one HVP per library; return rows (label, seconds, note)."""
    model, x, y = case.model, case.inputs, case.targets
    params = [p for p in model.parameters() if p.requires_grad]
    size = sum(p.numel() for p in params)
    v = torch.randn(size)
    block = torch.randn(8, size)

    def gradient() -> None:
        loss = F.cross_entropy(model(x), y)
        torch.autograd.grad(loss, params)

    fns: dict[str, Callable[[], object]] = {"gradient (forward + backward)": gradient}
    notes: dict[str, str] = {}
    for engine in ("reuse", "recompute", "forward_over_reverse"):
        op = lsuite_operator(case, engine)
        fns[f"lsuite matvec, engine={engine}"] = lambda op=op: op.matvec(v)
        fns[f"lsuite matmat K=8 per vector, engine={engine}"] = lambda op=op: op.matmat(block)
        notes[f"lsuite matmat K=8 per vector, engine={engine}"] = "per8"
    pyhessian = peers["PyHessian"]
    if pyhessian is not None:
        from pyhessian.utils import hessian_vector_product

        h = pyhessian.hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        vs = [t.reshape_as(p) for t, p in zip(v.split([p.numel() for p in params]), h.params,
                                              strict=True)]
        fns["PyHessian hessian_vector_product (graph reused)"] = (
            lambda: hessian_vector_product(h.gradsH, h.params, vs)
        )
    he = peers["hessian-eigenthings"]
    if he is not None:
        op_he = he.HessianOperator(copy.deepcopy(model), [(x, y)],
                                   he.supervised_loss(F.cross_entropy))
        fns["hessian-eigenthings matvec (autograd)"] = lambda: op_he.matvec(v)
    cl = peers["curvlinops"]
    if cl is not None:
        op_cl = curvlinops_operator(cl, case)
        fns["curvlinops H @ v"] = lambda: op_cl @ v
        fns["curvlinops H @ V K=8 per vector"] = lambda: op_cl @ block.T
        notes["curvlinops H @ V K=8 per vector"] = "per8"
    medians = interleaved(fns, case.repeats)
    return [(k, t / (8 if notes.get(k) == "per8" else 1), "") for k, t in medians.items()]


def curvlinops_operator(cl: ModuleType, case: Case, model: nn.Module | None = None) -> Any:
    model = model if model is not None else copy.deepcopy(case.model)
    params = [p for p in model.parameters() if p.requires_grad]
    return cl.HessianLinearOperator(model, nn.CrossEntropyLoss(), params,
                                    [(case.inputs, case.targets)], check_deterministic=False)


def exact_trace(case: Case) -> tuple[float, float]:
    """Return the exact trace from products with every basis vector, and the seconds it took."""
    op = lsuite_operator(case)
    start = time.perf_counter()
    total = 0.0
    for first in range(0, op.size, 256):
        rows = torch.arange(first, min(first + 256, op.size))
        basis = torch.zeros(len(rows), op.size)
        basis[torch.arange(len(rows)), rows] = 1.0
        total += float(op.matmat(basis)[torch.arange(len(rows)), rows].double().sum())
    return total, time.perf_counter() - start


def trace_methods(case: Case, peers: dict[str, ModuleType | None]) -> dict[str, Callable[[int, int], float]]:
    """Return ``method(budget, seed) -> trace estimate``, each building its operator afresh."""

    def lsuite_method(estimator: Callable[..., Any]) -> Callable[[int, int], float]:
        def run(budget: int, seed: int) -> float:
            op = lsuite_operator(case)
            g = torch.Generator().manual_seed(seed)
            return estimator(op.matmat, op.size, num_matvecs=budget, generator=g,
                             dtype=op.dtype, device=op.device, block_size=8).trace
        return run

    out = {"lsuite Hutch++": lsuite_method(hutchpp), "lsuite Hutchinson": lsuite_method(hutchinson)}
    pyhessian = peers["PyHessian"]
    if pyhessian is not None:
        def pyh(budget: int, seed: int) -> float:
            torch.manual_seed(seed)
            h = pyhessian.hessian(copy.deepcopy(case.model), nn.CrossEntropyLoss(),
                                  data=(case.inputs, case.targets), cuda=False)
            return float(sum(h.trace(maxIter=budget, tol=0.0)) / budget)
        out["PyHessian trace(tol=0)"] = pyh
    he = peers["hessian-eigenthings"]
    if he is not None:
        for method, label in (("hutch++", "Hutch++"), ("hutchinson", "Hutchinson")):
            def he_run(budget: int, seed: int, method: str = method) -> float:
                op = he.HessianOperator(copy.deepcopy(case.model), [(case.inputs, case.targets)],
                                        he.supervised_loss(F.cross_entropy))
                return he.trace(op, num_matvecs=budget, method=method, seed=seed).estimate
            out[f"hessian-eigenthings {label}"] = he_run
    cl = peers["curvlinops"]
    if cl is not None:
        for fn_name, label in (("hutchpp_trace", "Hutch++"), ("hutchinson_trace", "Hutchinson")):
            def cl_run(budget: int, seed: int, fn_name: str = fn_name) -> float:
                torch.manual_seed(seed)
                return float(getattr(cl, fn_name)(curvlinops_operator(cl, case), budget))
            out[f"curvlinops {label}"] = cl_run
    return out


def trace_table(case: Case, peers: dict[str, ModuleType | None], reference: float) -> list[list[str]]:
    """Find, per method, the smallest budget whose median error is within 1%, and its time."""
    rows: list[list[str]] = []
    pyhessian = peers["PyHessian"]
    if pyhessian is not None:
        errors, seconds, iters = [], [], []
        for seed in range(case.trace_seeds):
            torch.manual_seed(seed)
            h = pyhessian.hessian(copy.deepcopy(case.model), nn.CrossEntropyLoss(),
                                  data=(case.inputs, case.targets), cuda=False)
            samples, t = timed(lambda h=h: h.trace())
            errors.append(abs(sum(samples) / len(samples) - reference) / abs(reference))
            seconds.append(t)
            iters.append(len(samples))
        rows.append(["PyHessian trace() defaults (tol=1e-3)", f"{min(iters)}-{max(iters)}",
                     f"{statistics.median(errors):.2%}", f"{statistics.median(seconds):.3f}",
                     "(errors above 1%)" if statistics.median(errors) > 0.01 else ""])
    for label, method in trace_methods(case, peers).items():
        reached = None
        for budget in case.trace_budgets:
            results = [timed(lambda b=budget, s=s: method(b, s)) for s in range(case.trace_seeds)]
            error = statistics.median(abs(v - reference) / abs(reference) for v, _ in results)
            if error <= 0.01:
                reached = (budget, error, statistics.median(t for _, t in results))
                break
        if reached is None:
            rows.append([label, f"> {case.trace_budgets[-1]}", f"{error:.2%}", "-", "not reached"])
        else:
            rows.append([label, str(reached[0]), f"{reached[1]:.2%}", f"{reached[2]:.3f}", ""])
    return rows


class Counting:
    """Wrap a matvec callable and count its calls."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, v: Tensor) -> Tensor:
        self.calls += 1
        return self.fn(v)


def eig_methods(case: Case, peers: dict[str, ModuleType | None]) -> dict[str, tuple[list[Any], Callable[[Any, int], tuple[float, int]]]]:
    """Return ``label -> (settings ladder, run(setting, seed) -> (top eigenvalue, HVPs))``."""

    def lsuite_run(tol: float, seed: int) -> tuple[float, int]:
        op = lsuite_operator(case)
        g = torch.Generator().manual_seed(seed)
        start = torch.randn(op.size, generator=g)
        found = extreme_eigenpairs(op.matvec, start, num_largest=1, num_smallest=0,
                                   max_steps=200, tol=tol, generator=g)
        return float(found.largest.values[0]), found.num_matvecs

    out = {"lsuite Lanczos (tol)": ([3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3], lsuite_run)}
    pyhessian = peers["PyHessian"]
    if pyhessian is not None:
        def pyh(tol: float, seed: int) -> tuple[float, int]:
            torch.manual_seed(seed)
            h = pyhessian.hessian(copy.deepcopy(case.model), nn.CrossEntropyLoss(),
                                  data=(case.inputs, case.targets), cuda=False)
            counter = Counting(lambda v: v)
            utils = importlib.import_module("pyhessian.hessian")
            original = utils.hessian_vector_product
            utils.hessian_vector_product = lambda g, p, v: counter(original(g, p, v))
            try:
                values, _ = h.eigenvalues(maxIter=100, tol=tol, top_n=1)
            finally:
                utils.hessian_vector_product = original
            return float(values[0]), counter.calls
        out["PyHessian eigenvalues (tol)"] = ([1e-2, 1e-3, 1e-4, 1e-5], pyh)
    he = peers["hessian-eigenthings"]
    if he is not None:
        def he_run(steps: int, seed: int) -> tuple[float, int]:
            op = he.HessianOperator(copy.deepcopy(case.model), [(case.inputs, case.targets)],
                                    he.supervised_loss(F.cross_entropy))
            found = he.lanczos(op, k=1, max_iter=steps, which="LA", seed=seed)
            return float(found.eigenvalues[0]), steps
        out["hessian-eigenthings lanczos (max_iter)"] = (case.eig_steps, he_run)
    cl = peers["curvlinops"]
    if cl is not None:
        from scipy.sparse.linalg import eigsh

        def cl_run(tol: float, seed: int) -> tuple[float, int]:
            op = curvlinops_operator(cl, case).to_scipy()
            counter = Counting(op.matvec)
            wrapped = type(op)(op.shape, matvec=counter, dtype=op.dtype)
            v0 = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(seed)).numpy()
            values = eigsh(wrapped, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
            return float(values[0]), counter.calls
        out["curvlinops + scipy eigsh (tol)"] = ([1e-1, 1e-2, 1e-3, 1e-4], cl_run)
    return out


def eig_table(case: Case, peers: dict[str, ModuleType | None]) -> tuple[list[list[str]], float]:
    """Find, per method, the cheapest setting within 1e-3 of the reference top eigenvalue."""
    op = lsuite_operator(case)
    g = torch.Generator().manual_seed(123)
    start = torch.randn(op.size, generator=g)
    found = extreme_eigenpairs(op.matvec, start, num_largest=1, num_smallest=0,
                               max_steps=300, tol=1e-7, generator=g)
    reference = float(found.largest.values[0])
    rows: list[list[str]] = []
    for label, (ladder, run) in eig_methods(case, peers).items():
        reached = None
        for setting in ladder:
            results = [timed(lambda st=setting, s=s: run(st, s)) for s in range(case.eig_seeds)]
            errors = [abs(value - reference) / abs(reference) for (value, _), _ in results]
            if max(errors) <= 1e-3:
                hvps = statistics.median(n for (_, n), _ in results)
                seconds = statistics.median(t for _, t in results)
                reached = (setting, hvps, max(errors), seconds)
                break
        if reached is None:
            rows.append([label, f"> {ladder[-1]}", "-", f"{max(errors):.1e}", "-"])
        else:
            rows.append([label, f"{reached[0]:g}", f"{reached[1]:g}", f"{reached[2]:.1e}",
                         f"{reached[3]:.3f}"])
    return rows, reference


def speedups(rows: list[list[str]], time_col: int, base_prefix: str) -> None:
    """Append each row's speed-up over the first row whose label starts with ``base_prefix``."""
    base = next((r[time_col] for r in rows if r[0].startswith(base_prefix) and r[time_col] != "-"
                 and "defaults" not in r[0]), None)
    for r in rows:
        ok = base is not None and r[time_col] != "-"
        r.append(f"{float(base) / float(r[time_col]):.2f}" if ok else "-")


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def run_case(case: Case, peers: dict[str, ModuleType | None]) -> None:
    size = sum(p.numel() for p in case.model.parameters())
    print(f"## {case.name}: P = {size:,} parameters\n")
    hvp_rows = hvp_table(case, peers)
    gradient = hvp_rows[0][1]
    lsuite = next(t for k, t, _ in hvp_rows if k == "lsuite matvec, engine=reuse")
    print("(1) One HVP in units of one gradient (median of interleaved repeats)\n")
    print_table(
        ["method", "ms", "x gradient", "x lsuite reuse matvec"],
        [[k, f"{t * 1e3:.2f}", f"{t / gradient:.2f}", "-" if k.startswith("gradient") else
          f"{t / lsuite:.2f}"] for k, t, _ in hvp_rows],
    )
    if case.trace_budgets:
        if case.exact_trace:
            reference, seconds = exact_trace(case)
            label = f"exact trace {reference:.6g} ({size:,} basis products, {seconds:.1f} s)"
        else:
            op = lsuite_operator(case)
            g = torch.Generator().manual_seed(999)
            est = hutchpp(op.matmat, op.size, num_matvecs=case.trace_reference_matvecs,
                          generator=g, dtype=op.dtype, device=op.device)
            reference = est.trace
            label = (f"Hutch++ {case.trace_reference_matvecs}-matvec estimate {reference:.6g} "
                     f"(stderr {est.stderr:.2g})")
        print(f"(2) Wall time to a trace within 1% of the reference: {label}; "
              f"median |error| over {case.trace_seeds} seeds\n")
        rows = trace_table(case, peers, reference)
        speedups(rows, 3, "PyHessian trace(tol=0)")
        print_table(["method", "matvecs", "median abs. rel. error", "wall s", "note",
                     "speed-up vs PyHessian tol=0"], rows)
    else:
        print("(2) Trace within 1%: skipped on this model (each 1% estimate needs thousands of "
              "HVPs of about a second each on 2 cores)\n")
    rows, reference = eig_table(case, peers)
    speedups(rows, 4, "PyHessian")
    print(f"(3) Wall time to the top eigenvalue within 1e-3 of {reference:.6g} (lsuite Lanczos, "
          f"tol=1e-7); cheapest setting on the ladder, worst error over {case.eig_seeds} seeds\n")
    print_table(["method", "setting", "HVPs", "max rel. error", "wall s",
                 "speed-up vs PyHessian"], rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--skip-resnet", action="store_true", help="only the MLP")
    parser.add_argument("--repeats", type=int, default=None, help="HVP timing repeats")
    args = parser.parse_args(argv)
    print("# bench_hessian: lsuite vs PyHessian, hessian-eigenthings, curvlinops\n")
    print(device_line() + "\n")
    peers = load_peers()
    start = time.perf_counter()
    for case in make_cases(args.smoke, args.skip_resnet):
        if args.repeats is not None:
            case.repeats = args.repeats
        run_case(case, peers)
    print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
