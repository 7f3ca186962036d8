import copy

import pytest
import torch
import torch.nn.functional as F
from landscape_cases import (
    batches_for,
    cnn_bn,
    mlp,
    named,
    one_thread,  # noqa: F401 (autouse fixture)
    plain_loop,
)
from torch import nn

from lsuite.errors import ConfigError
from lsuite.evaluate import (
    AffinePoints,
    SegmentPoints,
    choose_batching,
    evaluate_points,
    grid_axis,
    vmap_friendly,
)
from lsuite.functional.params import flatten, unflatten
from lsuite.probes.batch_norm_stats import batch_norm_statistics
from lsuite.probes.data_source import DataSource
from lsuite.probes.point import snapshot

MODELS = {"mlp": mlp, "cnn_bn": cnn_bn}


class Scale(nn.Module):
    """A module owning a parameter that `vmap_friendly` does not know."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x * self.scale


def affine(point, seed=0, n=7):
    g = torch.Generator().manual_seed(seed)
    flat = flatten(point.params)
    directions = torch.randn(2, flat.numel(), generator=g, dtype=flat.dtype) * 0.3
    coefficients = torch.randn(n, 2, generator=g, dtype=torch.float64)
    coefficients[0] = 0.0  # the point itself
    coefficients[1, 1] = 0.0  # one coefficient skipped
    return AffinePoints(flat, directions, coefficients)


@pytest.mark.parametrize("batching", ["loop", "vmap"])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_affine_points_equal_a_plain_loop(kind, batching):
    model = MODELS[kind]()
    batches = batches_for(model)
    point = snapshot(model, F.cross_entropy)
    points = affine(point)
    values, mode = evaluate_points(point, {"train": DataSource(batches)}, points, batching=batching)
    assert mode == batching
    weights = [
        unflatten(points.stack(slice(i, i + 1))[0], point.params) for i in range(len(points))
    ]
    losses, accuracies = plain_loop(model, weights, batches)
    torch.testing.assert_close(
        values["train"].loss, torch.tensor(losses, dtype=torch.float64), atol=1e-6, rtol=1e-6
    )
    torch.testing.assert_close(
        values["train"].accuracy, torch.tensor(accuracies, dtype=torch.float64), atol=1e-12, rtol=0
    )


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_segment_points_are_exact_at_both_ends_and_equal_a_plain_loop(batching):
    start, end = mlp(0), mlp(1)
    batches = batches_for(end)
    point = snapshot(end, F.cross_entropy)
    alphas = [-0.5, 0.0, 0.3, 0.5, 1.0, 1.25]
    points = SegmentPoints(flatten(named(start)), flatten(point.params), alphas)
    out = torch.empty_like(flatten(point.params))
    points.fill(4, out)
    assert torch.equal(out, flatten(point.params))
    points.fill(1, out)
    assert torch.equal(out, flatten(named(start)))
    values, _ = evaluate_points(point, {"train": DataSource(batches)}, points, batching=batching)
    s, e = named(start), named(end)
    weights = [{k: (1 - a) * s[k] + a * e[k] for k in s} for a in alphas]
    losses, _ = plain_loop(end, weights, batches)
    torch.testing.assert_close(
        values["train"].loss, torch.tensor(losses, dtype=torch.float64), atol=1e-6, rtol=1e-6
    )


def test_results_do_not_depend_on_the_batch_split():
    model = mlp()
    point = snapshot(model, F.cross_entropy)
    points = affine(point)
    whole = batches_for(model, sizes=(17,))
    x, y = whole[0]
    split = [(x[:4], y[:4]), (x[4:15], y[4:15]), (x[15:], y[15:])]
    a, _ = evaluate_points(point, {"train": DataSource(whole)}, points)
    b, _ = evaluate_points(point, {"train": DataSource(split)}, points)
    torch.testing.assert_close(a["train"].loss, b["train"].loss, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(a["train"].accuracy, b["train"].accuracy, atol=1e-12, rtol=0)


def test_accuracy_is_none_for_regression_targets():
    model = nn.Linear(4, 2)
    batches = [(torch.randn(5, 4), torch.randn(5, 2))]
    point = snapshot(model, F.mse_loss)
    values, _ = evaluate_points(point, {"train": DataSource(batches)}, affine(point, n=3))
    assert values["train"].accuracy is None
    assert torch.isfinite(values["train"].loss).all()


def test_auto_batching_rule():
    small = snapshot(mlp(), F.cross_entropy)
    batches = batches_for(mlp())
    mode, chunk = choose_batching(small, batches, 441)
    assert mode == "race" and 2 <= chunk <= 64
    assert choose_batching(small, batches, 6) == ("vmap", 6)  # few, tiny points: vmap, no race
    digits = snapshot(
        nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)), F.cross_entropy
    )
    digit_batches = [(torch.randn(256, 64), torch.zeros(256, dtype=torch.long))]
    assert choose_batching(digits, digit_batches, 5) == ("loop", 1)  # 0.4 MiB: no sure win
    assert choose_batching(digits, digit_batches, 51) == ("loop", 1)  # too few to race
    assert choose_batching(digits, digit_batches, 441)[0] == "race"
    assert choose_batching(small, batches, 441, per_point_buffers=True) == ("loop", 1)
    with pytest.raises(ConfigError, match="batching: got 'vmap'; expected 'auto' or 'loop'"):
        choose_batching(small, batches, 441, batching="vmap", per_point_buffers=True)
    assert choose_batching(small, batches, 441, batching="loop") == ("loop", 1)
    small_conv = snapshot(cnn_bn(), F.cross_entropy)
    assert vmap_friendly(small_conv.skeleton)
    assert choose_batching(small_conv, batches_for(cnn_bn()), 441)[0] == "race"
    big_conv = snapshot(nn.Sequential(nn.Conv2d(3, 64, 3), nn.Flatten()), F.cross_entropy)
    images = [(torch.randn(64, 3, 16, 16), torch.zeros(64, dtype=torch.long))]
    assert choose_batching(big_conv, images, 441) == ("loop", 1)
    assert choose_batching(big_conv, images, 441, batching="vmap")[0] == "vmap"
    custom = snapshot(nn.Sequential(nn.Linear(6, 3), Scale()), F.cross_entropy)
    assert not vmap_friendly(custom.skeleton)
    assert choose_batching(custom, batches, 441) == ("loop", 1)
    train_bn = snapshot(
        nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4)), F.cross_entropy, bn_mode="train"
    )
    assert choose_batching(train_bn, batches, 441) == ("loop", 1)
    big = snapshot(
        nn.Sequential(nn.Linear(6, 4096), nn.ReLU(), nn.Linear(4096, 3)), F.cross_entropy
    )
    assert choose_batching(
        big, [(torch.randn(256, 6), torch.zeros(256, dtype=torch.long))], 441
    ) == ("loop", 1)
    with pytest.raises(ConfigError, match="batching: got 'fast'"):
        choose_batching(small, batches, 4, batching="fast")


def test_train_mode_batch_norm_uses_batch_statistics_and_leaves_the_point_alone():
    model = cnn_bn()
    batches = batches_for(model)
    point = snapshot(model, F.cross_entropy, bn_mode="train")
    before = {k: v.clone() for k, v in point.buffers.items()}
    points = affine(point, n=3)
    values, mode = evaluate_points(point, {"train": DataSource(batches)}, points)
    assert mode == "loop"
    for k, v in before.items():
        assert torch.equal(v, point.buffers[k])
    work = copy.deepcopy(model).train()
    w = unflatten(points.stack(slice(2, 3))[0], point.params)
    state = work.state_dict()
    state.update(w)
    work.load_state_dict(state)
    with torch.no_grad():
        expected = sum(F.cross_entropy(work(x), y).double() * len(y) for x, y in batches) / 17
    assert float(values["train"].loss[2]) == pytest.approx(float(expected), abs=1e-6)
    assert batch_norm_statistics(point, recomputed=False) == "batch"


def test_grid_axis_is_exact_and_contains_zero():
    axis = grid_axis((-1.0, 1.0), 21)
    assert axis[10] == 0.0 and axis[0] == -1.0 and axis[-1] == 1.0
    assert grid_axis((-10, 10), 21) == [float(i) for i in range(-10, 11)]
    assert 0.0 in grid_axis((-0.5, 1.0), 7)
    with pytest.raises(ConfigError, match="num_points: got 20; expected a count whose grid"):
        grid_axis((-1.0, 1.0), 20)
    with pytest.raises(ConfigError, match="span: got"):
        grid_axis((0.0, 1.0), 21)
    with pytest.raises(ConfigError, match="num_points: got 2; expected an int >= 3"):
        grid_axis((-1.0, 1.0), 2)


DDP_SCRIPT = """
import json, multiprocessing, sys
import torch
import torch.distributed as dist
import torch.nn.functional as F
from lsuite.probes.batch_norm_stats import batch_norm_statistics
from lsuite.probes.data_source import DataSource
from lsuite.probes.interpolation import Interpolation
from lsuite.probes.line import Line
from lsuite.probes.plane import Plane
from lsuite.probes.point import snapshot
from lsuite.probes.sharpness import Sharpness


def reduce_sum(t):
    dist.all_reduce(t)
    return t


def worker(rank, world):
    dist.init_process_group("gloo", init_method=f"file://{sys.argv[2]}.rdzv", rank=rank,
                            world_size=world)
    model, start, batches = torch.load(sys.argv[1], weights_only=False)
    point = snapshot(model, F.cross_entropy)
    mine = batches[rank::world]
    data = {name: DataSource(mine, reduce_sum=reduce_sum, world_size=world, rank=rank, name=name)
            for name in ("train", "val")}
    out = {}
    for key, (cls, kwargs, anchors) in SPECS.items():
        probe = globals()[cls](**kwargs)
        anchors = {"start": start} if anchors else {}
        result = probe.run(point, data, generator=torch.Generator().manual_seed(0), **anchors)
        out[key] = result.to_dict()
    with open(f"{sys.argv[2]}.{rank}", "w") as f:
        json.dump(out, f)
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

# per rank, bn_recompute_batches counts local batches: 1 per rank of 2 = 2 in one process
DDP_SPECS = {
    "interpolation": ("Interpolation", {"num_points": 5, "bn_recompute_batches": 1}, True),
    "plane": ("Plane", {"num_points": 3}, False),
    "line": ("Line", {"directions": ["random", "gradient"], "num_points": 5}, False),
    "sharpness": (
        "Sharpness",
        {"rho": [0.05], "steps": 2, "sigma": [0.01], "num_samples": 2},
        False,
    ),
}


@pytest.mark.ddp
def test_two_gloo_ranks_equal_one_process(tmp_path):
    import json
    import subprocess
    import sys

    from lsuite.probes.interpolation import Interpolation
    from lsuite.probes.line import Line
    from lsuite.probes.plane import Plane
    from lsuite.probes.sharpness import Sharpness

    model, start = cnn_bn(0, torch.float64), cnn_bn(1, torch.float64)
    batches = batches_for(model, sizes=(5, 9, 3, 4))
    # ranks hold batches [0, 2] and [1, 3]; each recomputes BatchNorm statistics on its first
    # local batch, so together on batches 0 and 1: the first two of the single process
    torch.save((model, named(start), batches), tmp_path / "inputs.pt")
    script = DDP_SCRIPT.replace(
        "\n\ndef reduce_sum", f"\nSPECS = {DDP_SPECS!r}\n\n\ndef reduce_sum", 1
    )
    (tmp_path / "worker.py").write_text(script)
    cmd = [
        sys.executable,
        str(tmp_path / "worker.py"),
        str(tmp_path / "inputs.pt"),
        str(tmp_path / "out"),
    ]
    done = subprocess.run(cmd, timeout=300, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    ranks = [json.loads((tmp_path / f"out.{r}").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]

    point = snapshot(model, F.cross_entropy)
    data = {name: DataSource(batches, name=name) for name in ("train", "val")}
    classes = {c.__name__: c for c in (Interpolation, Plane, Line, Sharpness)}
    for key, (cls, kwargs, anchors) in DDP_SPECS.items():
        if cls == "Interpolation":
            kwargs = {**kwargs, "bn_recompute_batches": 2}
        extra = {"start": named(start)} if anchors else {}
        single = classes[cls](**kwargs).run(
            point, data, generator=torch.Generator().manual_seed(0), **extra
        )
        expected = single.to_dict()
        expected.pop("batching", None)  # cost choice, not a value
        assert_close_tree(ranks[0][key], expected, key)


def assert_close_tree(got, expected, where):
    """Compare JSON trees: floats to 1e-9 (relative), everything else exactly."""
    if isinstance(expected, dict):
        for k, v in expected.items():
            assert_close_tree(got[k], v, f"{where}.{k}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_close_tree(a, b, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), where
    else:
        assert got == expected, where


class ItemModel(nn.Module):
    """Data-dependent Python control flow: cannot run under vmap."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, x):
        out = self.linear(x)
        return out if float(out.sum()) > -1e9 else -out


def test_auto_falls_back_to_the_loop_when_vmap_fails(caplog):
    model = ItemModel()
    batches = batches_for(mlp())
    point = snapshot(model, F.cross_entropy)
    points = affine(point, n=4)
    with caplog.at_level("WARNING"):
        values, mode = evaluate_points(point, {"train": DataSource(batches)}, points)
    assert mode == "loop" and "vmap failed" in caplog.text
    weights = [unflatten(points.stack(slice(i, i + 1))[0], point.params) for i in range(4)]
    losses, _ = plain_loop(model, weights, batches)
    torch.testing.assert_close(
        values["train"].loss, torch.tensor(losses, dtype=torch.float64), atol=1e-6, rtol=1e-6
    )
    with pytest.raises(RuntimeError):
        evaluate_points(point, {"train": DataSource(batches)}, points, batching="vmap")
    many = affine(point, n=300)  # enough points for a race, whose vmap half fails
    raced, mode = evaluate_points(point, {"train": DataSource(batches)}, many)
    looped, _ = evaluate_points(point, {"train": DataSource(batches)}, many, batching="loop")
    assert mode == "loop"
    torch.testing.assert_close(raced["train"].loss, looped["train"].loss, atol=0, rtol=0)


def test_auto_races_vmap_against_the_loop_and_agrees_with_both():
    model = mlp()
    batches = batches_for(model)
    point = snapshot(model, F.cross_entropy)
    points = affine(point, n=150)  # more than two chunks
    data = {"train": DataSource(batches)}
    auto, mode = evaluate_points(point, data, points)
    assert mode in ("vmap", "loop")
    loop, _ = evaluate_points(point, data, points, batching="loop")
    torch.testing.assert_close(auto["train"].loss, loop["train"].loss, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(auto["train"].accuracy, loop["train"].accuracy, atol=1e-12, rtol=0)
    assert all(t.device.type == "meta" for t in point.skeleton.parameters())  # slots restored


def test_the_skeleton_is_restored_when_evaluation_fails():
    model = cnn_bn()
    calls = []

    def failing_loss(outputs, targets):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("boom")
        return F.cross_entropy(outputs, targets)

    point = snapshot(model, failing_loss)
    with pytest.raises(ValueError, match="boom"):
        evaluate_points(
            point, {"train": DataSource(batches_for(model))}, affine(point), batching="loop"
        )
    assert all(t.device.type == "meta" for t in point.skeleton.parameters())
    assert all(t.device.type == "meta" for t in point.skeleton.buffers())
