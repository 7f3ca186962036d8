"""module=curve and module=simplex in a Trainer: what trains, what stays, what is logged."""

import pytest
import torch
from curve_cases import endpoint_files, sgd, tiny_net
from quiet_trainer import quiet_trainer

from lsuite.errors import ConfigError
from lsuite.functional.curves import find_family
from lsuite.functional.params import flatten
from lsuite.model.curve import CurveModule
from lsuite.model.simplex import SimplexModule


def trainer(tmp_path, **kwargs):
    batches = {"limit_train_batches": 4, "limit_val_batches": 1, "limit_test_batches": 1}
    return quiet_trainer(tmp_path, max_epochs=1, **{**batches, **kwargs})


def test_curve_trains_its_bend_and_keeps_its_ends(tmp_path, digits):
    (a, b), (net_a, net_b) = endpoint_files(tmp_path)
    module = CurveModule(tiny_net(), sgd(0.2), 10, start=a, end=b, kind="bezier", bends=1)
    ends = module.fixed_points.clone()
    bend = module.free_points.detach().clone()
    torch.testing.assert_close(bend[0], ends.mean(0))  # initialised on the line
    fit = trainer(tmp_path)
    fit.fit(module, datamodule=digits)
    torch.testing.assert_close(module.fixed_points, ends)
    assert not torch.equal(module.free_points.detach(), bend)
    # the network probes see is the midpoint of the trained curve, with the curve attached
    mid = 0.25 * ends[0] + 0.5 * module.free_points.detach()[0] + 0.25 * ends[1]
    network = module.probe_network()
    torch.testing.assert_close(flatten(dict(network.named_parameters())).detach(), mid)
    family = find_family(network)
    assert family.kind == "bezier" and family.fixed == (0, 2)
    torch.testing.assert_close(family.points()[[0, 2]], ends)
    torch.testing.assert_close(flatten(dict(net_a.named_parameters())).detach(), ends[0])
    metrics = fit.callback_metrics
    assert {"val/loss", "val/acc", "val/loss_max", "val/error_max"} <= set(metrics)
    assert metrics["val/loss_max"] >= metrics["val/loss"]
    tested = fit.test(module, datamodule=digits, verbose=False)[0]
    assert tested["test/line_error_max"] >= 0 and "test/line_loss_max" in tested
    assert module._ddp_params_and_buffers_to_ignore == [
        f"net.{k}" for k, _ in net_b.named_parameters()
    ]


def test_curve_draws_t_from_its_seed_and_checkpoints_the_generator(tmp_path):
    (a, b), _ = endpoint_files(tmp_path)
    first = CurveModule(tiny_net(), sgd(), 10, start=a, end=b, seed=3)
    second = CurveModule(tiny_net(), sgd(), 10, start=a, end=b, seed=3)
    draws = [first.sample_coefficients() for _ in range(3)]
    state = {}
    first.on_save_checkpoint(state)
    later = first.sample_coefficients()
    assert all(torch.equal(d, second.sample_coefficients()) for d in draws)
    second.on_load_checkpoint(state)
    assert torch.equal(second.sample_coefficients(), later)


def test_missing_or_bad_arguments_are_config_errors(tmp_path):
    (a, b), _ = endpoint_files(tmp_path)
    with pytest.raises(ConfigError, match=r"^start: got None; expected the point spec"):
        CurveModule(tiny_net(), sgd(), 10, end=b)
    with pytest.raises(ConfigError, match=r"^bends: got 0; expected an int >= 1"):
        CurveModule(tiny_net(), sgd(), 10, start=a, end=b, bends=0)
    with pytest.raises(ConfigError, match=r"^kind: got 'spline'"):
        CurveModule(tiny_net(), sgd(), 10, start=a, end=b, kind="spline")
    with pytest.raises(ConfigError, match=r"^end: .*does not exist|^end: .*missing|^end:"):
        CurveModule(tiny_net(), sgd(), 10, start=a, end=str(tmp_path / "nope.ckpt"))
    with pytest.raises(ConfigError, match=r"^vertices: got None"):
        SimplexModule(tiny_net(), sgd(), 10)


def test_simplex_volume_regulariser_and_ensemble(tmp_path, digits):
    paths, _ = endpoint_files(tmp_path)
    module = SimplexModule(
        tiny_net(), sgd(0.1), 10, vertices=paths, volume_weight=0.5, ensemble_size=3
    )
    v = torch.cat([module.fixed_points, module.free_points.detach()]).double()
    edges = v[1:] - v[0]
    by_hand = 0.5 * torch.logdet(edges @ edges.T) - torch.lgamma(torch.tensor(3.0)).double()
    assert float(module.log_volume().detach()) == pytest.approx(float(by_hand), rel=1e-5)
    (grad,) = torch.autograd.grad(module.regulariser(), module.free_points)
    assert grad.abs().sum() > 0  # the regulariser moves the free vertex
    before = float(module.log_volume().detach())
    fit = trainer(tmp_path)
    fit.fit(module, datamodule=digits)
    assert float(module.log_volume().detach()) > before  # SPRO pushes the free vertex out
    tested = fit.test(module, datamodule=digits, verbose=False)[0]
    assert 0 <= tested["test/ensemble_acc"] <= 1 and tested["test/ensemble_loss"] > 0
    assert {"test/loss_max", "test/line_loss_max"} <= set(tested)


def test_batch_norm_statistics_recomputed_at_validation(tmp_path, digits):
    (a, b), _ = endpoint_files(tmp_path, batch_norm=True)
    module = CurveModule(tiny_net(batch_norm=True), sgd(), 10, start=a, end=b, num_eval_points=3)
    fit = trainer(tmp_path)
    fit.validate(module, datamodule=digits, verbose=False)
    buffers = module._row_buffers[""]
    assert len(buffers) == 3
    key = next(k for k in buffers[0] if k.endswith("running_mean"))
    assert not torch.equal(buffers[0][key], buffers[2][key])  # each t gets its own statistics


def test_a_simplex_state_dict_loads_into_a_fresh_module(tmp_path):
    """What lsuite-probe does with a checkpoint: build from the config, load strictly."""
    paths, _ = endpoint_files(tmp_path, count=3)
    trained = SimplexModule(tiny_net(), sgd(), 10, vertices=paths, free_vertices=2, seed=1)
    with torch.no_grad():
        trained.free_points.add_(1.0)
    trained.refresh_network()
    fresh = SimplexModule(tiny_net(), sgd(), 10, vertices=paths, free_vertices=2, seed=1)
    fresh.load_state_dict(trained.state_dict(), strict=True)
    torch.testing.assert_close(find_family(fresh.probe_network()).points(), trained.points())
    centroid = trained.points().mean(0)
    torch.testing.assert_close(flatten(dict(fresh.net.named_parameters())).detach(), centroid)
