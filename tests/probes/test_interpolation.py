import copy
import json
from pathlib import Path

import pytest
import torch
from landscape_cases import (
    Quadratic,
    assert_same_fingerprint,
    batches_for,
    cnn_bn,
    fingerprint,
    mlp,
    named,
    one_thread,  # noqa: F401 (autouse fixture)
    plain_loop,
    quadratic_batches,
    quadratic_loss,
    with_grads,
)
from omegaconf import OmegaConf
from torch.optim.swa_utils import update_bn

from lsuite.anchors import WeightHistory, resolve_points
from lsuite.errors import ConfigError
from lsuite.probes.data_source import DataSource
from lsuite.probes.interpolation import Interpolation, barrier, max_rise
from lsuite.probes.point import snapshot

CONF = Path(__file__).resolve().parents[2] / "conf" / "probes" / "interpolation.yaml"


class Wrapper(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def lerp(start, end, alpha):
    return {k: (1 - alpha) * start[k] + alpha * end[k] for k in start}


@pytest.mark.parametrize("batching", ["loop", "vmap"])
@pytest.mark.parametrize("make", [mlp, cnn_bn], ids=["mlp", "cnn_bn"])
def test_curves_equal_a_plain_loop_on_every_split(make, batching):
    start, end = make(0), make(1)
    train, val = batches_for(end, 0), batches_for(end, 1, sizes=(4, 6))
    probe = Interpolation(num_points=9, alpha_range=(-0.5, 1.5), batching=batching)
    result = probe.measure(end, train, val_batches=val, start=start)
    assert result.alpha[2] == 0.0 and result.alpha[6] == 1.0
    weights = [lerp(named(start), named(end), a) for a in result.alpha]
    for split, batches in (("train", train), ("val", val)):
        losses, accuracies = plain_loop(end, weights, batches)
        assert result.loss[split] == pytest.approx(losses, abs=1e-6, rel=1e-6)
        assert result.accuracy[split] == pytest.approx(accuracies, abs=1e-12)
    assert result.start == "anchor"
    expected = "interpolated" if make is cnn_bn else "none"  # the start brings its statistics
    assert result.bn_statistics == expected
    json.dumps(result.to_dict(), allow_nan=False)


def test_quadratic_curve_barrier_and_monotonicity_match_closed_forms():
    model = Quadratic([3.0, 1.0, -2.0, 0.5])
    start = {"w": model.optimum + torch.tensor([1.0, -0.5, 0.2, 0.3], dtype=torch.float64)}
    probe = Interpolation(num_points=21, alpha_range=(-0.5, 1.5))
    result = probe.measure(model, quadratic_batches(), loss_fn=quadratic_loss, start=start)
    assert result.accuracy is None and result.error_barrier is None
    w0, w1 = start["w"], model.w.detach()
    expected = [model.value((1 - a) * w0 + a * w1) for a in result.alpha]
    assert result.loss["train"] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # L(a) - chord = -a (1 - a) (w1 - w0)^T A (w1 - w0) / 2
    curvature = float((w1 - w0) @ model.matrix @ (w1 - w0))
    gaps = [-a * (1 - a) * curvature / 2 for a in result.alpha if 0 <= a <= 1]
    assert result.loss_barrier["train"] == pytest.approx(max(0.0, *gaps), abs=1e-12)
    along = [v for a, v in zip(result.alpha, expected, strict=True) if 0 <= a <= 1]
    rises = [b - a for i, a in enumerate(along) for b in along[i + 1 :]]
    assert result.max_rise["train"] == pytest.approx(max(0.0, *rises), abs=1e-12)
    assert result.monotonic["train"] == (max(rises) <= 0)
    assert result.start_distance == pytest.approx(float((w1 - w0).norm()))


def test_barrier_and_rise_helpers():
    alpha = [-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5]
    assert barrier(alpha, [9, 1, 2, 4, 2, 1, 9]) == (3.0, 0.5)
    assert barrier(alpha, [9, 2, 1.5, 1, 0.5, 0, 9]) == (0.0, 0.0)
    assert max_rise(alpha, [0, 3, 2, 2.5, 1, 0, 9]) == 0.5
    assert max_rise(alpha, [9, 3, 2, 1, 1, 0, 9]) == 0.0


def measure_with(probe, model, batches, history=None):
    """Measure as a caller does: resolve the probe's point specs, then run it."""
    point = snapshot(model, torch.nn.functional.cross_entropy)
    data = {"train": DataSource(batches, name="train")}
    points = resolve_points(probe.point_specs(), point.params, history=history)
    return probe.run(point, data, generator=torch.Generator().manual_seed(0), **points)


def test_init_and_epoch_starts_come_from_observed_weights():
    end = mlp(1)
    batches = batches_for(end)
    init, middle = named(mlp(0)), named(mlp(2))
    for start, expected in (("init", init), ("epoch:1", middle), ("step:12", middle)):
        probe = Interpolation(num_points=5, start=start)
        history = WeightHistory(probe.point_specs().values())
        history.observe(init, step=0, epoch=0)
        history.observe(named(mlp(3)), step=6, epoch=0)
        history.observe(middle, step=12, epoch=1)
        restored = WeightHistory(probe.point_specs().values())
        restored.load_state_dict(copy.deepcopy(history.state_dict()))
        result = measure_with(probe, end, batches, restored)
        reference = Interpolation(num_points=5).measure(end, batches, start=expected)
        assert result.loss == reference.loss
        assert result.start == start and reference.start == "anchor"
    kept = WeightHistory(Interpolation(num_points=5, start="init").point_specs().values())
    for step, epoch in ((0, 0), (6, 0), (12, 1)):
        kept.observe(init, step=step, epoch=epoch)
    assert [o["step"] for o in kept.state_dict()["observations"]] == [0]


def test_missing_start_weights_raise_a_clear_error():
    end = mlp(1)
    with pytest.raises(ConfigError, match="start: 'init' names weights seen during training"):
        Interpolation(num_points=5).measure(end, batches_for(end))
    probe = Interpolation(num_points=5, start="epoch:3")
    history = WeightHistory(["epoch:3"])
    history.observe(named(mlp(0)), step=0, epoch=0)
    with pytest.raises(ConfigError, match=r"'epoch:3' has not been observed \(kept"):
        measure_with(probe, end, batches_for(end), history)
    with pytest.raises(ConfigError, match=r"got points \['strat'\]; expected some of \['start'\]"):
        Interpolation(num_points=5).measure(end, batches_for(end), strat=mlp(0))
    point = snapshot(end, torch.nn.functional.cross_entropy)
    data = {"train": DataSource(batches_for(end), name="train")}
    with pytest.raises(ConfigError, match=r"got points \['strat'\]"):
        probe.run(point, data, generator=torch.Generator(), strat=named(end))
    with pytest.raises(ConfigError, match="start: not given"):
        probe.run(point, data, generator=torch.Generator())


@pytest.mark.parametrize("layout", ["lightning", "plain", "plain_unprefixed"])
def test_start_from_a_checkpoint_file(tmp_path, layout):
    start, end = mlp(0), mlp(1)
    wrapped = Wrapper(end)  # keys "net.0.weight", ... as in a LightningModule holding the network
    state = {f"net.{k}": v for k, v in start.state_dict().items()}
    if layout == "lightning":
        torch.save({"state_dict": state, "epoch": 3, "global_step": 30}, tmp_path / "w.ckpt")
    elif layout == "plain":
        torch.save(state, tmp_path / "w.ckpt")
    else:
        torch.save(start.state_dict(), tmp_path / "w.ckpt")
    batches = batches_for(end)
    result = Interpolation(num_points=5, start=str(tmp_path / "w.ckpt")).measure(wrapped, batches)
    reference = Interpolation(num_points=5).measure(end, batches, start=start)
    assert result.loss["train"] == pytest.approx(reference.loss["train"], abs=1e-7)


def test_a_checkpoint_that_does_not_fit_is_a_config_error(tmp_path):
    end = mlp(1)
    batches = batches_for(end)
    other = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    torch.save(other.state_dict(), tmp_path / "shape.pt")
    with pytest.raises(ConfigError, match=r"entry '0.weight' has shape \(8, 6\)"):
        Interpolation(num_points=5, start=str(tmp_path / "shape.pt")).measure(end, batches)
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "keys.pt")
    with pytest.raises(ConfigError, match="the keys do not fit the model"):
        Interpolation(num_points=5, start=str(tmp_path / "keys.pt")).measure(end, batches)
    with pytest.raises(ConfigError, match=r"start: got .*missing.ckpt'; no such file"):
        Interpolation(num_points=5, start=str(tmp_path / "missing.ckpt"))
    (tmp_path / "corrupt.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="start: cannot read"):
        Interpolation(num_points=5, start=str(tmp_path / "corrupt.ckpt"))
    with pytest.raises(ConfigError, match="start: got 'foo'; no such file"):
        Interpolation(num_points=5, start="foo")


def test_batch_norm_statistics_are_recomputed_at_every_alpha():
    start, end = cnn_bn(0), cnn_bn(1)
    train, val = batches_for(end, 0), batches_for(end, 1)
    probe = Interpolation(num_points=5, bn_recompute_batches=2)
    result = probe.measure(end, train, val_batches=val, start=start)
    assert result.bn_statistics == "recomputed" and result.batching == "loop"
    for i, a in enumerate(result.alpha):
        work = copy.deepcopy(end)
        state = work.state_dict()
        state.update(lerp(named(start), named(end), a))
        work.load_state_dict(state)
        update_bn([x for x, _ in train[:2]], work)
        for split, batches in (("train", train), ("val", val)):
            losses, _ = plain_loop(work, [{}], batches)
            assert result.loss[split][i] == pytest.approx(losses[0], abs=1e-6)
    with pytest.raises(ConfigError, match="bn_recompute_batches: got 2"):
        probe.measure(end, train, start=start, bn_mode="train")


def test_measure_has_no_side_effects():
    start, end = cnn_bn(0), cnn_bn(1)
    batches = batches_for(end)
    with_grads(end, batches)
    torch.manual_seed(7)
    before = fingerprint(end)
    Interpolation(num_points=5, bn_recompute_batches=1).measure(end, batches, start=start)
    Interpolation(num_points=5).measure(end, batches, start=start)
    assert_same_fingerprint(before, fingerprint(end))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_points": 1}, "num_points: got 1; expected an int >= 2"),
        ({"alpha_range": (0.2, 1.0)}, r"alpha_range: got \(0.2, 1.0\)"),
        ({"num_points": 4, "alpha_range": (-0.5, 1.5)}, "num_points: got 4; expected a count"),
        ({"start": ""}, "start: got ''"),
        ({"start": "epoch:x"}, "start: got 'epoch:x'"),
        ({"bn_recompute_batches": -1}, "bn_recompute_batches: got -1"),
        ({"batching": "gpu"}, "batching: got 'gpu'"),
    ],
)
def test_invalid_arguments_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Interpolation(**kwargs)


def test_config_file_builds_the_probe():
    node = OmegaConf.load(CONF)["interpolation"]["probe"]
    kwargs = {k: v for k, v in OmegaConf.to_container(node).items() if k != "_target_"}
    probe = Interpolation(**kwargs)
    assert probe.name == "interpolation" and probe.start == "init"
    assert probe.align == ["none"] and probe.repair == ["none"] and probe.kinds == []
