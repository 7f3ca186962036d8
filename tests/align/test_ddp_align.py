"""Activation matching on 2 gloo ranks (batches split, all-reduce sums) equals 1 process.

The test runs this file as a script (``python test_ddp_align.py OUT PORT``): it spawns 2 gloo
processes, each matching on its round-robin share of the batches with
``reduce_sum=dist.all_reduce``, and each writes its permutations and correlations to
``OUT/rank<r>.pt``.
"""

import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lsuite.align import activation_matching, permutation_spec
from lsuite.model.cnn import CNN
from lsuite.model.mlp import MLP

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))

from timed_run import run_timed

WORLD = 2


def models(name: str, seed: int) -> nn.Module:
    """A small float64 model in eval mode with random BatchNorm statistics."""
    torch.manual_seed(seed)
    if name == "cnn":
        model = CNN((1, 24), 5, channels=(6, 8), norm="batch", pool="avg").double()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.BatchNorm1d):
                    module.running_mean.normal_(0, 0.3)
                    module.running_var.uniform_(0.5, 2.0)
    else:
        model = MLP((12,), 5, width=10, depth=2).double()
    return model.eval()


def inputs(name: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Six batches of 5 (inputs, targets), the same in every process."""
    shape = (1, 24) if name == "cnn" else (12,)
    g = torch.Generator().manual_seed(7)
    return [
        (torch.randn(5, *shape, generator=g, dtype=torch.float64), torch.zeros(5)) for _ in range(6)
    ]


def match(name: str, batches, reduce_sum=None):
    """Activation-match model seed 1 to model seed 0 on ``batches``."""
    a, b = models(name, 0), models(name, 1)
    spec = permutation_spec(a, batches[0][0])
    return activation_matching(spec, a, b, batches, reduce_sum=reduce_sum)


def worker(rank: int, out: str, port: int) -> None:
    """One rank: match on its share of the batches of both models, save the results."""
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )

    def reduce_sum(t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t)
        return t

    saved = {}
    for name in ("cnn", "mlp"):
        result = match(name, inputs(name)[rank::WORLD], reduce_sum)
        saved[name] = {"perms": result.perms, "correlation": result.correlation}
    torch.save(saved, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ddp
def test_two_ranks_equal_one_for_activation_matching(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "MASTER_ADDR")}
    done = run_timed(
        [sys.executable, __file__, str(tmp_path), str(free_port())],
        env=env,
        timeout=120,  # a hang fails the test
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for name in ("cnn", "mlp"):
        single = match(name, inputs(name))
        assert len(single.perms) >= 2
        for saved in ranks:
            for group, perm in single.perms.items():
                assert torch.equal(saved[name]["perms"][group], perm), (name, group)
                assert saved[name]["correlation"][group] == pytest.approx(
                    single.correlation[group], rel=1e-9, abs=1e-12
                )


if __name__ == "__main__":
    mp.spawn(worker, args=(sys.argv[1], int(sys.argv[2])), nprocs=WORLD, join=True)
