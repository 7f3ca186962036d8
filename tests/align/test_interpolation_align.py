"""Interpolation with align / repair: planted permutations, 2 ranks equal 1, records round-trip."""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from timed_run import command_env, run_timed
from torch import nn

from lsuite.align import apply_permutation, permutation_spec, random_perms
from lsuite.errors import ConfigError
from lsuite.probes.data_source import DataSource
from lsuite.probes.interpolation import Interpolation, InterpolationResult
from lsuite.probes.point import snapshot


class Wrapper(nn.Module):
    """A LightningModule-like wrapper: the network is ``net`` (keys ``net.*``)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 3)
    ).double()


def batches(seed=0, sizes=(8, 8, 6, 10)):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(n, 6, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (n,), generator=g),
        )
        for n in sizes
    ]


def permuted(model, seed=3):
    """A copy of ``model`` with every hidden unit permuted: the same function."""
    spec = permutation_spec(model, batches()[0][0])
    perms = random_perms(spec, torch.Generator().manual_seed(seed))
    other = mlp(0)
    other.load_state_dict(apply_permutation(spec, perms, model.state_dict()))
    return other


@pytest.mark.parametrize("wrap", [False, True], ids=["plain", "wrapped"])
def test_planted_permutation_is_undone_by_weight_and_activation_matching(wrap):
    end = mlp(1)
    start = permuted(end)
    if wrap:
        end, start = Wrapper(end), Wrapper(start)
    probe = Interpolation(num_points=5, align=["none", "weight", "activation"], repair="none")
    result = probe.measure(end, batches(), val_batches=batches(1), start=start)
    assert result.curves == ["weight", "activation"]
    assert result.loss_barrier["train"] > 1e-3  # the naive line between the copies rises
    for kind in result.curves:
        assert result.aligned_distance[kind] < 1e-10
        for split in ("train", "val"):
            assert result.aligned_loss_barrier[kind][split] == pytest.approx(0.0, abs=1e-10)
            assert result.aligned_error_barrier[kind][split] == pytest.approx(0.0, abs=1e-12)
    assert max(result.align_output_diff.values()) < 1e-10
    scalars = result.scalars()
    assert "train_loss_barrier_weight" in scalars and "val_error_barrier_activation" in scalars


def test_align_none_keeps_todays_result_and_repair_meets_the_endpoints():
    end, start = mlp(1), mlp(2)
    plain = Interpolation(num_points=5).measure(end, batches(), start=start)
    probe = Interpolation(num_points=5, align=["none", "weight"], repair=["none", "repair"])
    result = probe.measure(end, batches(), start=start)
    assert result.curves == ["repair", "weight", "weight_repair"]
    # the naive fields are those of the probe without align / repair
    for name in ("alpha", "loss", "accuracy", "loss_barrier", "error_barrier", "start_distance"):
        assert getattr(result, name) == getattr(plain, name)
    assert plain.curves == [] and plain.aligned_loss == {}
    # REPAIR leaves the endpoints as they are and lowers the barrier of the aligned line
    for kind in ("repair", "weight_repair"):
        assert result.aligned_loss[kind]["train"][-1] == pytest.approx(plain.loss["train"][-1])
    assert result.aligned_loss["weight"]["train"][0] == pytest.approx(plain.loss["train"][0])
    again = InterpolationResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    old = {k: v for k, v in plain.to_dict().items() if not k.startswith("align")}
    old.pop("curves")
    assert InterpolationResult.from_dict(old) == plain


def test_bad_align_and_repair_values_name_the_key():
    with pytest.raises(ConfigError, match="align: got 'weights'"):
        Interpolation(align="weights")
    with pytest.raises(ConfigError, match="repair: got"):
        Interpolation(repair=["none", "bn"])
    with pytest.raises(ConfigError, match="align: got"):
        Interpolation(align=[])


DDP_SCRIPT = """
import json, multiprocessing, sys
import torch
import torch.distributed as dist
import torch.nn.functional as F
from lsuite.probes.data_source import DataSource
from lsuite.probes.interpolation import Interpolation
from lsuite.probes.point import snapshot


def reduce_sum(t):
    dist.all_reduce(t)
    return t


def worker(rank, world):
    dist.init_process_group("gloo", init_method=f"file://{sys.argv[2]}.rdzv", rank=rank,
                            world_size=world)
    model, start, batches = torch.load(sys.argv[1], weights_only=False)
    point = snapshot(model, F.cross_entropy)
    mine = batches[rank::world]
    data = {"train": DataSource(mine, reduce_sum=reduce_sum, world_size=world, rank=rank)}
    probe = Interpolation(num_points=3, align=["weight", "activation"], repair=["none", "repair"])
    result = probe.run(point, data, generator=torch.Generator().manual_seed(0), start=start)
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
def test_two_gloo_ranks_equal_one_process(tmp_path, monkeypatch):
    monkeypatch.delenv("MASTER_PORT", raising=False)
    end, start = mlp(1), mlp(2)
    data = batches()
    torch.save((end, dict(start.named_parameters()), data), tmp_path / "inputs.pt")
    (tmp_path / "worker.py").write_text(DDP_SCRIPT)
    cmd = [sys.executable, str(tmp_path / "worker.py"), str(tmp_path / "in"), str(tmp_path / "o")]
    cmd[2] = str(tmp_path / "inputs.pt")
    done = subprocess.run(cmd, timeout=300, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"o.{r}").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]
    probe = Interpolation(num_points=3, align=["weight", "activation"], repair=["none", "repair"])
    single = probe.run(
        snapshot(end, F.cross_entropy),
        {"train": DataSource(data)},
        generator=torch.Generator().manual_seed(0),
        start=dict(start.named_parameters()),
    ).to_dict()
    for kind in single["curves"]:
        assert ranks[0]["aligned_loss"][kind]["train"] == pytest.approx(
            single["aligned_loss"][kind]["train"], rel=1e-9, abs=1e-12
        )
    assert ranks[0]["curves"] == single["curves"]


@pytest.mark.slow
def test_lsuite_train_and_lsuite_probe_pairs_with_alignment(tmp_path):
    import csv

    run = tmp_path / "run"
    train = [
        "trainer.max_epochs=2",
        "logger=none",
        "probes=[interpolation]",
        "probes.interpolation.probe.num_points=5",
        "probes.interpolation.probe.align=weight",
        "probes.interpolation.on_error=raise",
        "callbacks.model_checkpoint.save_top_k=-1",
        "callbacks.model_checkpoint.monitor=null",
        f"hydra.run.dir={run}",
    ]
    done = run_timed(
        [sys.executable, "-m", "lsuite.train", *train],
        cwd=tmp_path,
        env=command_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (run / "probes" / "interpolation.jsonl").read_text().splitlines()
    record = json.loads(lines[-1])
    assert record["result"]["curves"] == ["weight"]
    assert record["result"]["align_output_diff"]["weight"] < 1e-5
    assert "val_loss_barrier_weight" in record["scalars"]

    names = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert len(names) >= 2
    probe = [
        "probes=[interpolation]",
        "probes.interpolation.probe.num_points=5",
        "probes.interpolation.probe.align=[none,weight]",
        "probes.interpolation.probe.repair=[none,repair]",
    ]
    command = [sys.executable, "-m", "lsuite.probe", "--no-progress", str(run), "--pairs"]
    done = run_timed(
        [*command, "--ckpt", *names[:2], *probe],
        cwd=tmp_path,
        env=command_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for kind in ("", "_repair", "_weight", "_weight_repair"):
        rows = list(
            csv.reader((run / f"pairs_val_loss_barrier{kind}.csv").read_text().splitlines())
        )
        matrix = [[float(v) for v in row[1:]] for row in rows[1:]]
        assert matrix[0][0] == 0.0 and matrix[0][1] == matrix[1][0] >= 0.0
        assert (run / f"pairs_barriers{kind}.png").is_file()
