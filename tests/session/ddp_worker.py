"""Run `measure_module` on 2 gloo processes (a script, run by tests in a timed subprocess).

Usage: python ddp_worker.py OUT_DIR PORT FAIL_RANK ON_ERROR
FAIL_RANK is -1 for no failure. Each rank writes OUT_DIR/rank<r>.txt with its outcome.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))

from failing_probe import FailingProbe

from lsuite.session import Outputs, ProbeFailed, Sync, measure_module


def batches(rank, world):
    g = torch.Generator().manual_seed(0)
    every = [
        (torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(4)
    ]
    return every[rank::world]  # the same batches as test_measure.batches(), shared round-robin


def worker(rank, out, port, fail_rank, on_error):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)

    def reduce_sum(t):
        dist.all_reduce(t)
        return t

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    sync = Sync(rank=rank, world_size=2, reduce_sum=reduce_sum, barrier=dist.barrier)
    outcome = "?"
    try:
        result = measure_module(
            FailingProbe(fail_rank=fail_rank, fail_after=2, sums=5, name="failing"),
            net,
            {"train": batches(rank, 2)},
            loss_fn=torch.nn.functional.cross_entropy,
            meta={"probe": "failing", "step": 3, "epoch": 0, "when": "step", "world_size": 2},
            seed=0,
            outputs=Outputs(directory=Path(out), plots=False),
            sync=sync,
            on_error=on_error,
        )
        outcome = "none" if result is None else f"loss={result.loss!r}"
    except ProbeFailed as error:
        outcome = f"raised: {error}"
    # a collective after the probe: all ranks must still be in step
    flag = torch.ones(1)
    dist.all_reduce(flag)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"rank{rank}.txt").write_text(f"{outcome}\nafter={int(flag.item())}\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    out, port, fail_rank, on_error = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    mp.spawn(worker, args=(out, port, fail_rank, on_error), nprocs=2, join=True)
