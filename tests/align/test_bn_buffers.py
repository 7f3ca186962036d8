"""Interpolation curves carry each end's BatchNorm statistics: alpha=0 is the start network."""

import copy
import json
import sys

import pytest
import torch
import torch.nn.functional as F
from timed_run import command_env, run_timed

from lsuite.anchors import resolve_points
from lsuite.probes.interpolation import Interpolation
from lsuite.probes.segment_buffers import interpolate_buffers


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def batches(name, count=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (1, 40) if name.startswith("cnn1d") else (1, 8, 8)
    return [
        (
            torch.randn(8, *shape, generator=g, dtype=torch.float64),
            torch.randint(0, 10, (8,), generator=g),
        )
        for _ in range(count)
    ]


def own_loss(model, data):
    """The mean loss of a network in eval mode with its own running statistics."""
    with torch.no_grad():
        return sum(F.cross_entropy(model(x), y).item() for x, y in data) / len(data)


def lerped(start, end, alpha):
    """A network whose weights and floating buffers are the lerp of the ends' (by hand)."""
    net = copy.deepcopy(end)
    a, b = start.state_dict(), end.state_dict()
    net.load_state_dict(
        {k: (1 - alpha) * a[k] + alpha * b[k] if b[k].is_floating_point() else b[k] for k in b}
    )
    return net.eval()


@pytest.mark.parametrize("name", ["cnn1d-batch-avg", "resnet-batch"])
@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_ends_are_each_network_with_its_own_statistics(zoo, name, batching):
    make = zoo.make
    start, end = make(name, seed=0), make(name, seed=1)
    data = batches(name)
    probe = Interpolation(num_points=5, align=["none", "weight", "activation"], batching=batching)
    result = probe.measure(end, data, start=start, dtype=torch.float64)
    assert result.bn_statistics == "interpolated"
    assert result.aligned_bn_statistics == {"weight": "interpolated", "activation": "interpolated"}
    first, last = own_loss(start, data), own_loss(end, data)
    assert abs(first - last) > 1e-2  # the statistics matter
    curves = {"naive": result.loss["train"]}
    curves.update({k: v["train"] for k, v in result.aligned_loss.items()})
    for kind, curve in curves.items():
        assert curve[0] == pytest.approx(first, rel=1e-10, abs=1e-12), kind
        assert curve[-1] == pytest.approx(last, rel=1e-10, abs=1e-12), kind
    # the naive midpoint is the network with lerped weights and lerped statistics
    assert curves["naive"][2] == pytest.approx(own_loss(lerped(start, end, 0.5), data), rel=1e-10)
    assert max(result.align_output_diff.values()) < 1e-10


def test_repair_and_bn_reset_curves_keep_the_end_points(zoo):
    make = zoo.make
    name = "cnn1d-batch-avg"
    start, end = make(name, seed=0), make(name, seed=1)
    data = batches(name)
    probe = Interpolation(num_points=3, align="weight", repair=["none", "repair", "bn_reset"])
    result = probe.measure(end, data, start=start, dtype=torch.float64)
    assert result.aligned_bn_statistics == {
        "weight": "interpolated",
        "weight_repair": "interpolated",
        "weight_bn_reset": "recomputed",
    }
    first, last = own_loss(start, data), own_loss(end, data)
    for kind in ("weight", "weight_repair"):
        assert result.aligned_loss[kind]["train"][0] == pytest.approx(first, rel=1e-8)
        assert result.aligned_loss[kind]["train"][-1] == pytest.approx(last, rel=1e-8)


def test_a_start_without_buffers_uses_the_end_statistics(zoo):
    make = zoo.make
    name = "cnn1d-batch-avg"
    start, end = make(name, seed=0), make(name, seed=1)
    data = batches(name)
    params_only = {k: v for k, v in start.named_parameters()}
    result = Interpolation(num_points=3).measure(end, data, start=params_only)
    assert result.bn_statistics == "point"
    with_end_stats = copy.deepcopy(end)
    with_end_stats.load_state_dict(params_only, strict=False)
    assert result.loss["train"][0] == pytest.approx(own_loss(with_end_stats, data), rel=1e-10)


def test_interpolated_buffers_clamp_alpha_and_take_integers_from_the_nearer_end():
    a = {"running_var": torch.tensor([1.0]), "num_batches_tracked": torch.tensor(3)}
    b = {"running_var": torch.tensor([3.0]), "num_batches_tracked": torch.tensor(7)}
    assert interpolate_buffers(a, b, 0.25)["running_var"].item() == 1.5
    assert interpolate_buffers(a, b, -0.5)["running_var"].item() == 1.0
    assert interpolate_buffers(a, b, 1.5)["running_var"].item() == 3.0
    assert interpolate_buffers(a, b, 0.4)["num_batches_tracked"].item() == 3
    assert interpolate_buffers(a, b, 0.5)["num_batches_tracked"].item() == 7


def test_resolved_files_carry_their_buffers(zoo, tmp_path):
    make = zoo.make
    model, other = make("cnn1d-batch-avg", seed=0), make("cnn1d-batch-avg", seed=1)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    full, bare = tmp_path / "full.pt", tmp_path / "bare.pt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in other.state_dict().items()}}, full)
    torch.save(dict(other.named_parameters()), bare)
    got = resolve_points({"start": str(full)}, params, buffers)["start"]
    for k, v in other.state_dict().items():
        assert torch.equal(got[k], v), k
    got = resolve_points({"start": str(bare)}, params, buffers)["start"]
    assert set(got) == set(params)
    assert set(resolve_points({"start": str(full)}, params)["start"]) == set(params)


def _last(path):
    return json.loads(path.read_text().splitlines()[-1])


@pytest.mark.slow
def test_lsuite_probe_start_from_another_run_uses_its_statistics(tmp_path):
    sweep = tmp_path / "sweep"
    train = [
        "-m",
        "seed=0,1",
        "model=cnn",
        "model.norm=batch",
        "model.channels=[8,8]",
        "trainer.max_epochs=1",
        "test=true",
        "logger=none",
        "probes=[interpolation]",
        "probes.interpolation.probe.num_points=3",
        "probes.interpolation.on_error=raise",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.num}",
    ]
    done = run_timed(
        [sys.executable, "-m", "lsuite.train", *train],
        cwd=tmp_path,
        env=command_env(),
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # in training, start=init brings the initial BatchNorm statistics
    assert _last(sweep / "0" / "probes" / "interpolation.jsonl")["result"]["bn_statistics"] == (
        "interpolated"
    )
    other = sweep / "1" / "checkpoints" / "last.ckpt"
    probe = [
        "probes=[interpolation]",
        "probes.interpolation.probe.num_points=3",
        "probes.interpolation.probe.align=[none,weight]",
        f"probes.interpolation.probe.start={other}",
    ]
    command = [sys.executable, "-m", "lsuite.probe", "--no-progress", str(sweep), *probe]
    done = run_timed(command, cwd=tmp_path, env=command_env(), timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "BatchNorm" not in done.stderr  # no warning: the start brought its statistics
    line = _last(sweep / "0" / "probes" / "interpolation.jsonl")["result"]
    same = _last(sweep / "1" / "probes" / "interpolation.jsonl")["result"]  # run 1 to itself
    assert line["bn_statistics"] == "interpolated"
    assert line["aligned_bn_statistics"] == {"weight": "interpolated"}
    for split, curve in same["loss"].items():
        own = curve[0]  # run 1 with its own statistics, on the same probe batches
        assert curve == pytest.approx([own] * 3, rel=1e-6)
        assert line["loss"][split][0] == pytest.approx(own, rel=1e-5)
        assert line["aligned_loss"]["weight"][split][0] == pytest.approx(own, rel=1e-4)
