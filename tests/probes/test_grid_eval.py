import copy

import pytest
import torch
import torch.nn.functional as F
from landscape_cases import batches_for, cnn_bn, mlp, named, plain_loop
from torch import nn
from torch.optim.swa_utils import update_bn

from lsuite.errors import ConfigError
from lsuite.functional.params import flatten, unflatten
from lsuite.probes.data_source import DataSource
from lsuite.probes.grid_eval import (
    AffinePoints,
    SegmentPoints,
    batch_norm_statistics,
    choose_batching,
    evaluate_points,
    grid_axis,
    recompute_batch_norm,
    vmap_friendly,
)
from lsuite.probes.point import snapshot

MODELS = {"mlp": mlp, "cnn_bn": cnn_bn}


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
    weights = [unflatten(points.stack(slice(i, i + 1))[0], point.params) for i in range(len(points))]
    losses, accuracies = plain_loop(model, weights, batches)
    torch.testing.assert_close(values["train"].loss, torch.tensor(losses, dtype=torch.float64), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(values["train"].accuracy, torch.tensor(accuracies, dtype=torch.float64), atol=1e-12, rtol=0)


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
    torch.testing.assert_close(values["train"].loss, torch.tensor(losses, dtype=torch.float64), atol=1e-6, rtol=1e-6)


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
    assert mode == "vmap" and 2 <= chunk <= 64
    assert choose_batching(small, batches, 441, per_point_buffers=True) == ("loop", 1)
    assert choose_batching(small, batches, 441, batching="loop") == ("loop", 1)
    conv = snapshot(cnn_bn(), F.cross_entropy)
    assert not vmap_friendly(conv.skeleton)
    assert choose_batching(conv, batches_for(cnn_bn()), 441) == ("loop", 1)
    assert choose_batching(conv, batches_for(cnn_bn()), 441, batching="vmap")[0] == "vmap"
    train_bn = snapshot(nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4)), F.cross_entropy, bn_mode="train")
    assert choose_batching(train_bn, batches, 441) == ("loop", 1)
    big = snapshot(nn.Sequential(nn.Linear(6, 4096), nn.ReLU(), nn.Linear(4096, 3)), F.cross_entropy)
    assert choose_batching(big, [(torch.randn(256, 6), torch.zeros(256, dtype=torch.long))], 441) == ("loop", 1)
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


def test_recompute_batch_norm_matches_update_bn():
    model = cnn_bn()
    batches = batches_for(model)
    point = snapshot(model, F.cross_entropy)
    params = {k: v * 1.1 for k, v in point.params.items()}
    buffers = recompute_batch_norm(point, params, DataSource(batches), num_batches=2)
    reference = copy.deepcopy(model)
    state = reference.state_dict()
    state.update(params)
    reference.load_state_dict(state)
    update_bn([x for x, _ in batches[:2]], reference)
    for key, value in reference.named_buffers():
        torch.testing.assert_close(buffers[key], value, atol=1e-6, rtol=1e-6)
    assert not torch.equal(buffers["1.running_mean"], point.buffers["1.running_mean"])
    with pytest.raises(ConfigError, match="bn_recompute_batches"):
        recompute_batch_norm(snapshot(mlp(), F.cross_entropy), named(mlp()), DataSource(batches), 1)


def test_batch_norm_statistics_labels():
    assert batch_norm_statistics(snapshot(mlp(), F.cross_entropy), False) == "none"
    assert batch_norm_statistics(snapshot(cnn_bn(), F.cross_entropy), False) == "point"
    assert batch_norm_statistics(snapshot(cnn_bn(), F.cross_entropy), True) == "recomputed"


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
