"""GeneralizationMeasures on 2 gloo ranks equals 1 process (margins, scales, Hessian)."""

import json
import sys

import pytest
import torch
import torch.nn.functional as F
from timed_run import run_timed
from torch import nn

from lsuite.probes.data_source import DataSource
from lsuite.probes.generalization import GeneralizationMeasures
from lsuite.probes.point import snapshot

KWARGS = {
    "num_samples": 3,
    "search_depth": 4,
    "sharpness_steps": 2,
    "hessian_trace_matvecs": 9,
    "hessian_max_iter": 10,
}

WORKER = """
import json, multiprocessing, sys
import torch, torch.distributed as dist, torch.nn.functional as F
from lsuite.probes.data_source import DataSource
from lsuite.probes.generalization import GeneralizationMeasures
from lsuite.probes.point import snapshot


def reduce_sum(t):
    dist.all_reduce(t)
    return t


def worker(rank, world):
    dist.init_process_group("gloo", init_method=f"file://{sys.argv[2]}.rdzv", rank=rank,
                            world_size=world)
    model, init, batches, kwargs = torch.load(sys.argv[1], weights_only=False)
    point = snapshot(model, F.cross_entropy)
    source = DataSource(batches[rank::world], reduce_sum=reduce_sum, world_size=world, rank=rank)
    result = GeneralizationMeasures(**kwargs).run(
        point, {"train": source}, generator=torch.Generator().manual_seed(0),
        init=dict(init.named_parameters()),
    )
    with open(f"{sys.argv[2]}.{rank}", "w") as f:
        json.dump(result.to_dict(), f)
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    context = multiprocessing.get_context("fork")
    ranks = [context.Process(target=worker, args=(r, 2)) for r in range(2)]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join()
    sys.exit(max(p.exitcode for p in ranks))
"""


@pytest.mark.ddp
def test_two_gloo_ranks_equal_one_process(tmp_path):
    torch.manual_seed(0)
    init = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    g = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(n, 4, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (n,), generator=g),
        )
        for n in (7, 5, 9, 4)
    ]
    torch.save((model, init, batches, KWARGS), tmp_path / "inputs.pt")
    (tmp_path / "worker.py").write_text(WORKER)
    cmd = [sys.executable, str(tmp_path / "worker.py"), str(tmp_path / "inputs.pt")]
    result = run_timed([*cmd, str(tmp_path / "out")], timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"out.{r}").read_text()) for r in (0, 1)]

    single = (
        GeneralizationMeasures(**KWARGS)
        .run(
            snapshot(model, F.cross_entropy),
            {"train": DataSource(batches)},
            generator=torch.Generator().manual_seed(0),
            init=dict(init.named_parameters()),
        )
        .to_dict()
    )
    assert ranks[0] == ranks[1]  # every rank holds the same result
    assert ranks[0].keys() == single.keys()
    for key, value in single.items():
        if isinstance(value, float):
            assert ranks[0][key] == pytest.approx(value, rel=1e-8, abs=1e-12), key
        elif not isinstance(value, list) or not value or not isinstance(value[0], float):
            assert ranks[0][key] == value, key
    assert ranks[0]["num_samples"] == 25
