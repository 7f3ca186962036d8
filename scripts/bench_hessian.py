"""Benchmark lsuite's Hessian probes against PyHessian, hessian-eigenthings and curvlinops.

Every library runs on the same model and batch in one process, in eval mode (PyHessian forces
it). Three tables per model:

1. the cost of one Hessian-vector product (HVP) in units of one gradient (forward + backward),
   medians of interleaved repeats, and the ratio to lsuite's default;
2. the wall time to a trace within 1% of a reference (exact where it can be computed):
   budgets double until the RMS relative error over independent runs is at most 1%; PyHessian
   runs with ``tol=-inf`` (its stop test divides by the signed running mean, so even ``tol=0``
   stops early), and its runs at budget ``b`` are the disjoint ``b``-chunks of a few long runs;
3. the wall time to the top eigenvalue within 1e-3 relative error: each method's own stopping
   setting (tolerance or number of steps) on a ladder, read off one recorded run per seed, and
   the cheapest setting within 1e-3 on every seed counts.

Models: an MLP 64-128-128-10 trained for 30 epochs on 1,500 sklearn digits, probed on 256
held-out digits, and a ResNet-20 with BatchNorm at initialisation on random 3x32x32 input,
batch 128. ``--smoke`` shrinks everything to run in seconds.

Usage: ``python scripts/bench_hessian.py [--smoke] [--threads N] [--skip-resnet]``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import math
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsuite.linalg.lanczos import LanczosDecomposition, lanczos
from lsuite.probes.data_source import DataSource
from lsuite.probes.hessian_operator import HessianOperator
from lsuite.probes.hessian_trace import HessianTrace
from lsuite.probes.point import snapshot

PEERS = {
    "PyHessian": "pyhessian",
    "hessian-eigenthings": "hessian_eigenthings",
    "curvlinops": "curvlinops",
    "BackPACK": "backpack",
}
Peers = dict[str, ModuleType | None]


@dataclasses.dataclass
class Case:
    """One model and batch, and what the benchmark may spend on it."""

    name: str
    model: nn.Module
    inputs: Tensor
    targets: Tensor
    repeats: int
    block: int
    all_engines: bool
    trace_budgets: list[int] | None
    trace_seeds: int
    pyhessian_runs: int
    eig_seeds: int
    eig_steps: int
    he_steps: list[int]
    curvlinops_eig: bool
    note: str = ""


def load_peers() -> Peers:
    """Import each peer library, or say that it is missing."""
    out: Peers = {}
    for label, module in PEERS.items():
        try:
            out[label] = importlib.import_module(module)
        except ImportError:
            out[label] = None
            print(f"skipped: {label} not installed")
    return out


def device_line() -> str:
    """Name the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU: {cpu}, GPU: {gpu}; "
        "everything runs on the CPU"
    )


def train_mlp(width: int, epochs: int, num_train: int) -> tuple[nn.Module, Tensor, Tensor]:
    """Train the lsuite MLP on sklearn digits with Adam; return it in eval mode and the data."""
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
    model.zero_grad(set_to_none=True)
    return model.eval(), x, y


def make_cases(smoke: bool, skip_resnet: bool) -> list[Case]:
    """Build the models and batches."""
    from lsuite.model.resnet import ResNet

    torch.manual_seed(0)
    cases = []
    if smoke:
        mlp, x, y = train_mlp(width=16, epochs=2, num_train=256)
        cases.append(
            Case(
                name="MLP 64-16-16-10 (smoke)",
                model=mlp,
                inputs=x[256:320],
                targets=y[256:320],
                repeats=3,
                block=4,
                all_engines=True,
                trace_budgets=[12, 24],
                trace_seeds=2,
                pyhessian_runs=1,
                eig_seeds=1,
                eig_steps=30,
                he_steps=[4, 8],
                curvlinops_eig=False,
            )
        )
        if not skip_resnet:
            cases.append(
                Case(
                    name="ResNet-8 x0.25 (smoke)",
                    model=ResNet((3, 8, 8), 10, depth=8, width=0.25),
                    inputs=torch.randn(4, 3, 8, 8),
                    targets=torch.randint(0, 10, (4,)),
                    repeats=2,
                    block=2,
                    all_engines=False,
                    trace_budgets=None,
                    trace_seeds=1,
                    pyhessian_runs=1,
                    eig_seeds=1,
                    eig_steps=10,
                    he_steps=[4],
                    curvlinops_eig=False,
                )
            )
        return [dataclasses.replace(c, model=c.model.eval()) for c in cases]
    mlp, x, y = train_mlp(width=128, epochs=30, num_train=1500)
    cases.append(
        Case(
            name="MLP 64-128-128-10, trained, 256 held-out digits",
            model=mlp,
            inputs=x[1500:1756],
            targets=y[1500:1756],
            repeats=150,
            block=8,
            all_engines=True,
            trace_budgets=[48, 96, 192, 384, 768, 1536],
            trace_seeds=10,
            pyhessian_runs=4,
            eig_seeds=3,
            eig_steps=100,
            he_steps=[4, 6, 8, 10, 12, 16, 20, 30, 40],
            curvlinops_eig=True,
        )
    )
    if not skip_resnet:
        cases.append(
            Case(
                name="ResNet-20 (BatchNorm, eval, init), random 3x32x32, B=128",
                model=ResNet((3, 32, 32), 10, depth=20).eval(),
                inputs=torch.randn(128, 3, 32, 32),
                targets=torch.randint(0, 10, (128,)),
                repeats=3,
                block=2,
                all_engines=False,
                trace_budgets=None,
                trace_seeds=1,
                pyhessian_runs=1,
                eig_seeds=1,
                eig_steps=25,
                he_steps=[8, 12, 16],
                curvlinops_eig=False,
                note="one seed; curvlinops eigsh skipped: ARPACK needs >= 20 HVPs per restart",
            )
        )
    return cases


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Return each function's median seconds over rounds that run every function once.

    The order is shuffled in every round, so neither load drift nor the state one function
    leaves for the next (allocator, caches) favours a fixed position.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    shuffle = random.Random(0).shuffle
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        shuffle(order)
        for key in order:
            start = time.perf_counter()
            fns[key]()
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def lsuite_operator(case: Case, engine: str = "reuse") -> HessianOperator:
    point = snapshot(case.model, F.cross_entropy)
    return HessianOperator(point, DataSource([(case.inputs, case.targets)]), engine=engine)


def he_operator(he: ModuleType, case: Case) -> Any:
    return he.HessianOperator(
        copy.deepcopy(case.model),
        [(case.inputs, case.targets)],
        he.supervised_loss(F.cross_entropy),
    )


def cl_operator(cl: ModuleType, case: Case) -> Any:
    model = copy.deepcopy(case.model)
    params = [p for p in model.parameters() if p.requires_grad]
    return cl.HessianLinearOperator(
        model,
        nn.CrossEntropyLoss(),
        params,
        [(case.inputs, case.targets)],
        check_deterministic=False,
    )


def pyhessian_object(pyhessian: ModuleType, case: Case) -> Any:
    return pyhessian.hessian(
        copy.deepcopy(case.model),
        nn.CrossEntropyLoss(),
        data=(case.inputs, case.targets),
        cuda=False,
    )


def hvp_rows(case: Case, peers: Peers) -> list[tuple[str, float]]:
    """Time one HVP per library and engine (per vector for blocks of K)."""
    model, x, y, k = case.model, case.inputs, case.targets, case.block
    params = [p for p in model.parameters() if p.requires_grad]
    size = sum(p.numel() for p in params)
    v, block = torch.randn(size), torch.randn(k, size)

    def gradient() -> None:
        torch.autograd.grad(F.cross_entropy(model(x), y), params)

    fns: dict[str, Callable[[], object]] = {"gradient (forward + backward)": gradient}
    per = {}
    for engine in ("reuse", "recompute", "forward_over_reverse"):
        op = lsuite_operator(case, engine)
        fns[f"lsuite matvec, engine={engine}"] = lambda op=op: op.matvec(v)
        if engine == "reuse":
            # On the CPU matmat loops over matvec by default; this row is the batched variant.
            op = HessianOperator(op.point, op.source, batched=True)
            label = f"lsuite matmat K={k} (per vector), engine=reuse, batched=True"
        elif engine == "forward_over_reverse" and case.all_engines:
            label = f"lsuite matmat K={k} (per vector, vmap), engine={engine}"
        else:
            continue
        fns[label], per[label] = (lambda op=op: op.matmat(block)), k
    if peers["PyHessian"] is not None:
        from pyhessian.utils import hessian_vector_product

        h = pyhessian_object(peers["PyHessian"], case)
        vs = [
            t.reshape_as(p)
            for t, p in zip(v.split([p.numel() for p in h.params]), h.params, strict=True)
        ]
        fns["PyHessian HVP (graph reused)"] = lambda: hessian_vector_product(h.gradsH, h.params, vs)
    if peers["hessian-eigenthings"] is not None:
        op_he = he_operator(peers["hessian-eigenthings"], case)
        fns["hessian-eigenthings matvec"] = lambda: op_he.matvec(v)
    if peers["curvlinops"] is not None:
        op_cl = cl_operator(peers["curvlinops"], case)
        fns["curvlinops H @ v"] = lambda: op_cl @ v
        if case.all_engines:
            label = f"curvlinops H @ V K={k} (per vector)"
            fns[label], per[label] = (lambda: op_cl @ block.T), k
    medians = interleaved(fns, case.repeats)
    return [(key, t / per.get(key, 1)) for key, t in medians.items()]


def reference_trace(case: Case, peers: Peers) -> tuple[float, str]:
    """Return the exact trace (BackPACK's exact diagonal, else basis products) and how."""
    backpack = peers["BackPACK"]
    start = time.perf_counter()
    if backpack is not None and hasattr(case.model, "hidden"):
        from backpack.extensions import DiagHessian

        layers: list[nn.Module] = []
        for layer in case.model.hidden:
            layers += [copy.deepcopy(layer), nn.ReLU()]
        net = backpack.extend(nn.Sequential(*layers, copy.deepcopy(case.model.head)))
        loss = backpack.extend(nn.CrossEntropyLoss())(net(case.inputs), case.targets)
        with backpack.backpack(DiagHessian()):
            loss.backward()
        value = sum(float(p.diag_h.double().sum()) for p in net.parameters())
        return value, f"exact, BackPACK DiagHessian, {time.perf_counter() - start:.2f} s"
    op = lsuite_operator(case)
    total = 0.0
    for first in range(0, op.size, 256):
        rows = torch.arange(first, min(first + 256, op.size))
        basis = torch.zeros(len(rows), op.size)
        basis[torch.arange(len(rows)), rows] = 1.0
        total += float(op.matmat(basis)[torch.arange(len(rows)), rows].double().sum())
    return total, f"exact, {op.size} basis products, {time.perf_counter() - start:.1f} s"


def trace_rows(case: Case, peers: Peers, reference: float) -> list[list[str]]:
    """Per method: the smallest budget whose RMS error over seeds is <= 1%, and its time."""
    assert case.trace_budgets is not None
    budgets, seeds = case.trace_budgets, range(case.trace_seeds)

    def error(value: float) -> float:
        return abs(value - reference) / abs(reference)

    methods: dict[str, Callable[[int, int], float]] = {
        "lsuite HessianTrace(method=hutchpp)": lambda m, s: (
            HessianTrace(num_matvecs=m, rel_stderr=None)
            .measure(
                case.model,
                [(case.inputs, case.targets)],
                generator=torch.Generator().manual_seed(s),
            )
            .trace
        ),
    }
    he, cl = peers["hessian-eigenthings"], peers["curvlinops"]
    if he is not None:
        methods["hessian-eigenthings trace(method='hutch++')"] = lambda m, s: (
            he.trace(he_operator(he, case), num_matvecs=m, method="hutch++", seed=s).estimate
        )
    if cl is not None:

        def cl_run(m: int, s: int) -> float:
            torch.manual_seed(s)
            return float(cl.hutchpp_trace(cl_operator(cl, case), m))

        methods["curvlinops hutchpp_trace"] = cl_run
    rows: list[list[str]] = []
    pyhessian = peers["PyHessian"]
    if pyhessian is not None:
        long_budgets = [*budgets, 2 * budgets[-1], 4 * budgets[-1]]
        rows += pyhessian_trace_rows(pyhessian, case, error, long_budgets)
    for label, run in methods.items():
        for budget in budgets:
            errors, times = [], []
            for s in seeds:
                start = time.perf_counter()
                errors.append(error(run(budget, s)))
                times.append(time.perf_counter() - start)
            if rms(errors) <= 0.01:
                rows.append(
                    [
                        label,
                        str(budget),
                        f"{rms(errors):.2%} ({len(errors)})",
                        f"{statistics.median(times):.3f}",
                    ]
                )
                break
        else:
            rows.append(
                [
                    label,
                    f"> {budgets[-1]}",
                    f"{rms(errors):.2%} ({len(errors)})",
                    f"> {statistics.median(times):.3f}",
                ]
            )
    return rows


def rms(values: Sequence[float]) -> float:
    return math.sqrt(sum(v * v for v in values) / len(values))


def pyhessian_trace_rows(
    pyhessian: ModuleType, case: Case, error: Callable[[float], float], budgets: list[int]
) -> list[list[str]]:
    """PyHessian defaults, and tol=-inf at budget b from the disjoint b-chunks of long runs."""
    default_errors, default_times, iters, per_sample, build = [], [], [], [], []
    longs: list[list[float]] = []
    for seed in range(case.pyhessian_runs):
        torch.manual_seed(seed)
        start = time.perf_counter()
        h = pyhessian_object(pyhessian, case)
        build.append(time.perf_counter() - start)
        samples = h.trace()  # defaults: maxIter=100, tol=1e-3
        default_times.append(time.perf_counter() - start)
        default_errors.append(error(sum(samples) / len(samples)))
        iters.append(len(samples))
        start = time.perf_counter()
        longs.append(h.trace(maxIter=budgets[-1], tol=-math.inf))
        per_sample.append((time.perf_counter() - start) / len(longs[-1]))
    rows = [
        [
            "PyHessian trace() defaults (maxIter=100, tol=1e-3)",
            f"{min(iters)}-{max(iters)}",
            f"{rms(default_errors):.2%} ({len(default_errors)})",
            f"{statistics.median(default_times):.3f}",
        ]
    ]
    for b in budgets:
        errors = [error(sum(run[i : i + b]) / b) for run in longs for i in range(0, len(run), b)]
        seconds = statistics.median(build) + statistics.median(per_sample) * b
        if rms(errors) <= 0.01:
            rows.append(
                [
                    "PyHessian trace(tol=-inf)",
                    str(b),
                    f"{rms(errors):.2%} ({len(errors)})",
                    f"{seconds:.3f}",
                ]
            )
            return rows
    rows.append(
        [
            "PyHessian trace(tol=-inf)",
            f"> {budgets[-1]}",
            f"{rms(errors):.2%} ({len(errors)})",
            f"> {seconds:.3f}",
        ]
    )
    return rows


def lsuite_trajectory(case: Case, seed: int) -> list[tuple[float, float, float]]:
    """Run Lanczos, recording (seconds, top Ritz value, its relative residual) at every step."""
    start = time.perf_counter()
    op = lsuite_operator(case)
    g = torch.Generator().manual_seed(seed)
    record: list[tuple[float, float, float]] = []

    def stop(d: LanczosDecomposition) -> bool:
        theta, s = d.ritz()
        rel = float(d.residual_bounds(s)[-1] / theta.abs().max())
        record.append((time.perf_counter() - start, float(theta[-1]), rel))
        return rel <= 1e-7

    lanczos(op.matvec, torch.randn(op.size, generator=g), case.eig_steps, generator=g, stop=stop)
    return record


def pyhessian_trajectory(pyhessian: ModuleType, case: Case, seed: int) -> list[tuple[float, float]]:
    """Run PyHessian's power iteration without early stop, recording (seconds, eigenvalue)."""
    module = importlib.import_module("pyhessian.hessian")
    original = module.hessian_vector_product
    record: list[tuple[float, float]] = []
    torch.manual_seed(seed)
    start = time.perf_counter()
    h = pyhessian_object(pyhessian, case)

    def hooked(grads: Any, params: Any, v: Any) -> Any:
        hv = original(grads, params, v)
        value = float(sum(torch.sum(a * b) for a, b in zip(hv, v, strict=True)))
        record.append((time.perf_counter() - start, value))
        return hv

    module.hessian_vector_product = hooked
    try:
        h.eigenvalues(maxIter=case.eig_steps, tol=-math.inf, top_n=1)
    finally:
        module.hessian_vector_product = original
    return record


def pyhessian_stop(record: list[tuple[float, float]], tol: float) -> tuple[float, float, int]:
    """Replay PyHessian's relative-change rule on a recorded run: (value, seconds, HVPs)."""
    value = record[0][1]
    for i in range(1, len(record)):
        if abs(value - record[i][1]) / (abs(value) + 1e-6) < tol:
            return value, record[i][0], i + 1
        value = record[i][1]
    return value, record[-1][0], len(record)


def eig_rows(case: Case, peers: Peers) -> tuple[list[list[str]], float]:
    """Per method: the cheapest own setting within 1e-3 of the top eigenvalue on every seed."""
    seeds = range(case.eig_seeds)
    runs = [lsuite_trajectory(case, s) for s in seeds]
    reference = runs[0][-1][1]
    rows: list[list[str]] = []

    def pick(
        label: str, settings: Sequence[Any], outcome: Callable[[Any, int], tuple[float, float, int]]
    ) -> None:
        for setting in settings:
            results = [outcome(setting, s) for s in seeds]
            worst = max(abs(v - reference) / abs(reference) for v, _, _ in results)
            if worst <= 1e-3:
                rows.append(
                    [
                        label,
                        f"{setting:g}",
                        f"{statistics.median(n for *_, n in results):g}",
                        f"{worst:.1e}",
                        f"{statistics.median(t for _, t, _ in results):.3f}",
                    ]
                )
                return
        spent = statistics.median(t for _, t, _ in results)
        rows.append(
            [
                label,
                f"> {settings[-1]:g}",
                f"{statistics.median(n for *_, n in results):g}",
                f"{worst:.1e}",
                f"> {spent:.3f}",
            ]
        )

    def lsuite_outcome(tol: float, s: int) -> tuple[float, float, int]:
        step = next((i for i, r in enumerate(runs[s]) if r[2] <= tol), len(runs[s]) - 1)
        return runs[s][step][1], runs[s][step][0], step + 1

    pick(
        "lsuite hessian_eigenpairs (tol)",
        [3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4],
        lsuite_outcome,
    )
    pyhessian = peers["PyHessian"]
    if pyhessian is not None:
        pyh = [pyhessian_trajectory(pyhessian, case, s) for s in seeds]
        pick(
            "PyHessian eigenvalues (tol)",
            [1e-2, 1e-3, 1e-4, 1e-5, 1e-6],
            lambda tol, s: pyhessian_stop(pyh[s], tol),
        )
    he = peers["hessian-eigenthings"]
    if he is not None:
        he_runs = []
        for s in seeds:
            start = time.perf_counter()
            v0 = torch.randn(
                sum(p.numel() for p in case.model.parameters()),
                generator=torch.Generator().manual_seed(s),
            )
            td = he.lanczos_tridiagonal(he_operator(he, case), v0, case.he_steps[-1])
            he_runs.append((td, (time.perf_counter() - start) / td.iterations))

        def he_outcome(steps: int, s: int) -> tuple[float, float, int]:
            td, per_step = he_runs[s]
            t = (
                torch.diag(td.alphas[:steps])
                + torch.diag(td.betas[: steps - 1], 1)
                + torch.diag(td.betas[: steps - 1], -1)
            )
            return float(torch.linalg.eigvalsh(t.double())[-1]), per_step * steps, steps

        pick("hessian-eigenthings lanczos (max_iter)", case.he_steps, he_outcome)
    cl = peers["curvlinops"]
    if cl is not None and case.curvlinops_eig:
        from scipy.sparse.linalg import eigsh

        def cl_outcome(tol: float, s: int) -> tuple[float, float, int]:
            start = time.perf_counter()
            op = cl_operator(cl, case).to_scipy()
            calls = [0]

            def matvec(v: Any) -> Any:
                calls[0] += 1
                return op.matvec(v)

            wrapped = type(op)(op.shape, matvec=matvec, dtype=op.dtype)
            v0 = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(s)).numpy()
            value = eigsh(wrapped, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
            return float(value[0]), time.perf_counter() - start, calls[0]

        pick("curvlinops + scipy eigsh (tol)", [1e-1, 1e-2, 1e-3], cl_outcome)
    return rows, reference


def add_speedup(rows: list[list[str]], seconds_col: int, base_label: str) -> None:
    """Append each row's speed-up over the row labelled ``base_label``.

    A "> " prefix means the base never reached the target and its time is a lower bound.
    """
    base = next((r[seconds_col] for r in rows if r[0] == base_label), None)
    for r in rows:
        mine = r[seconds_col]
        if base is None or mine.startswith(">") or "defaults" in r[0]:
            r.append("-")
            continue
        ratio = float(base.lstrip("> ")) / float(mine)
        r.append(f"{'> ' if base.startswith('>') else ''}{ratio:.2f}x")


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def run_case(case: Case, peers: Peers) -> None:
    size = sum(p.numel() for p in case.model.parameters())
    print(f"## {case.name}: P = {size:,}" + (f" ({case.note})" if case.note else "") + "\n")
    timings = hvp_rows(case, peers)
    gradient = timings[0][1]
    lsuite = dict(timings)["lsuite matvec, engine=reuse"]
    print(f"(1) One HVP in gradients, medians of {case.repeats} interleaved repeats\n")
    print_table(
        ["method", "ms", "x gradient", "x lsuite default"],
        [
            [
                k,
                f"{t * 1e3:.2f}",
                f"{t / gradient:.2f}",
                "-" if k.startswith("gradient") else f"{t / lsuite:.2f}",
            ]
            for k, t in timings
        ],
    )
    if case.trace_budgets is None:
        print(
            "(2) Trace to 1%: skipped on this model: a 1% trace needs hundreds to thousands of "
            "HVPs of ~1-3 s each here, more than the benchmark's time budget\n"
        )
    else:
        reference, how = reference_trace(case, peers)
        print(
            f"(2) Wall time to a trace within 1% of {reference:.6g} ({how}): the smallest "
            "doubling budget whose RMS relative error over independent runs (seeds, or disjoint "
            f"chunks of {case.pyhessian_runs} long PyHessian runs) is <= 1%\n"
        )
        rows = trace_rows(case, peers, reference)
        add_speedup(rows, 3, "PyHessian trace(tol=-inf)")
        print_table(
            [
                "method",
                "matvecs",
                "RMS rel. error (runs)",
                "wall s",
                "speed-up vs PyHessian tol=-inf",
            ],
            rows,
        )
    rows, reference = eig_rows(case, peers)
    add_speedup(rows, 4, "PyHessian eigenvalues (tol)")
    print(
        f"(3) Wall time to the top eigenvalue within 1e-3 of {reference:.6g} (lsuite Lanczos run "
        f"to a relative residual of 1e-7); worst error over {case.eig_seeds} seed(s)\n"
    )
    print_table(
        ["method", "setting", "HVPs", "max rel. error", "wall s", "speed-up vs PyHessian"], rows
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--skip-resnet", action="store_true", help="only the MLP")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print("# bench_hessian: lsuite vs PyHessian, hessian-eigenthings, curvlinops\n")
    print(device_line() + "\n")
    peers = load_peers()
    start = time.perf_counter()
    for case in make_cases(args.smoke, args.skip_resnet):
        run_case(case, peers)
    print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
