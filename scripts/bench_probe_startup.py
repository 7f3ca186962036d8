"""Benchmark lsuite-probe's start-up: the command's wall time beyond the probes' own seconds.

Trains one short run of the default model (``lsuite-train`` defaults: MLP on digits) with the
probes ``hessian_trace`` and ``interpolation`` (their default settings), then runs
``lsuite-probe RUN_DIR`` a few times. For each run the probes' seconds are summed from the new
records (``meta.seconds``); start-up is the wall time minus that. Prints medians, the device and
the target (start-up at most 3 s on a 2-core CPU).

Usage: ``python scripts/bench_probe_startup.py [--smoke] [--repeats N] [--device cpu|cuda]
[--model mlp|resnet] [--keep DIR]``. ``--model resnet`` uses ResNet-20 on CIFAR-10 (downloads the
data once).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBES = "probes=[hessian_trace,interpolation]"


def _env() -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MASTER_PORT", None)
    return env


def _train(run_dir: Path, args: argparse.Namespace) -> None:
    overrides = [
        f"trainer.max_epochs={1 if args.smoke else args.epochs}",
        "logger=none",
        PROBES,
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        f"hydra.run.dir={run_dir}",
    ]
    if args.model == "resnet":
        overrides += ["model=resnet", "data=cifar10", "trainer.limit_train_batches=20"]
    if args.smoke:
        overrides += ["probes.hessian_trace.probe.num_matvecs=8", "trainer.limit_train_batches=2"]
    subprocess.run(
        [sys.executable, "-m", "lsuite.train", *overrides],
        env=_env(),
        check=True,
        capture_output=True,
        timeout=3000,
    )


def _probe_seconds(run_dir: Path) -> float:
    total = 0.0
    for path in (run_dir / "probes").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            meta = record.get("meta", record)
            if meta.get("source") == "lsuite-probe":
                total += float(meta.get("seconds", 0.0))
    return total


def _device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return f"CUDA {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu} ({os.cpu_count()} cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one short run, one repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model", choices=["mlp", "resnet"], default="mlp")
    parser.add_argument("--keep", type=Path, help="keep the run in this directory")
    args = parser.parse_args()
    repeats = 1 if args.smoke else args.repeats
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_probe_"))
    run_dir = root / "run"
    started = time.perf_counter()
    _train(run_dir, args)
    walls, probes, cpus = [], [], []
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    for _ in range(repeats):
        shutil.rmtree(run_dir / "probes", ignore_errors=True)
        tick = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "lsuite.probe",
                str(run_dir),
                "--no-progress",
                PROBES,
                f"trainer.accelerator={accelerator}",
            ],
            env=_env(),
            check=True,
            capture_output=True,
            timeout=1200,
        )
        walls.append(time.perf_counter() - tick)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        probes.append(_probe_seconds(run_dir))
    startups = [w - p for w, p in zip(walls, probes, strict=True)]
    print(f"lsuite-probe start-up, model={args.model}, {PROBES}, {repeats} run(s)")
    print(f"device: {_device_name(args.device)}; python {platform.python_version()}")
    print("| quantity | median s | min s | max s |")
    print("|---|---|---|---|")
    for name, values in (
        ("command wall time", walls),
        ("command CPU time (user + sys)", cpus),
        ("probes' own seconds", probes),
        ("start-up (wall - probes)", startups),
    ):
        print(
            f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |"
        )
    verdict = "within" if statistics.median(startups) <= 3.0 else "over"
    print(f"target: start-up <= 3 s; median {statistics.median(startups):.2f} s ({verdict})")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average during the runs: {load:.1f} on {os.cpu_count()} cores")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
