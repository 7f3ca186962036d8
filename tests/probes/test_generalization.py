"""GeneralizationMeasures: every measure against a hand computation on small fixed networks."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lsuite.errors import ConfigError
from lsuite.functional.layer_norms import layer_matrices, layer_norms
from lsuite.functional.params import flatten
from lsuite.probes.data_source import DataSource
from lsuite.probes.generalization import GeneralizationMeasures, GeneralizationMeasuresResult
from lsuite.probes.point import snapshot

CHEAP = {"hessian_trace_matvecs": 0, "hessian_max_iter": 0, "num_samples": 2, "search_depth": 3}


def two_layer(seed=0, hidden=5, inputs=4, classes=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, classes)).double()


def batches(seed=0, sizes=(5, 9, 3), inputs=4, classes=3):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(n, inputs, generator=g, dtype=torch.float64),
            torch.randint(0, classes, (n,), generator=g),
        )
        for n in sizes
    ]


def moved(model, scale=0.3, seed=1):
    """A copy of ``model`` with every parameter moved by a fixed random amount."""
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return other


@pytest.fixture(scope="module")
def measured():
    init = two_layer()
    model = moved(init)
    data = batches()
    result = GeneralizationMeasures(**CHEAP).measure(model, data, init=init)
    return model, init, data, result


def test_layer_norms_are_torch_matrix_norms_and_conv_kernels_are_reshaped():
    conv = nn.Conv2d(2, 3, 3).double()
    params = {"conv.weight": conv.weight.detach(), "conv.bias": conv.bias.detach()}
    init = {k: torch.zeros_like(v) for k, v in params.items()}
    matrices = layer_matrices(params)
    assert list(matrices) == ["conv.weight"] and matrices["conv.weight"].shape == (3, 18)
    norms = layer_norms(params, init)
    kernel = conv.weight.detach().reshape(3, 18)
    assert norms.spectral[0] == pytest.approx(float(torch.linalg.matrix_norm(kernel, ord=2)))
    assert norms.spectral[0] == pytest.approx(float(torch.linalg.svdvals(kernel)[0]))
    assert norms.frobenius[0] == pytest.approx(float(kernel.pow(2).sum().sqrt()))
    assert norms.distance_frobenius == pytest.approx(norms.frobenius)  # init = 0
    assert norms.distance_spectral == pytest.approx(norms.spectral)


def test_norm_measures_equal_their_definitions(measured):
    model, init, _, r = measured
    weights = [model[0].weight.detach(), model[2].weight.detach()]
    starts = [init[0].weight.detach(), init[2].weight.detach()]
    spec = [float(torch.linalg.matrix_norm(w, ord=2)) ** 2 for w in weights]
    fro = [float(w.pow(2).sum()) for w in weights]
    dist_fro = [float((w - w0).pow(2).sum()) for w, w0 in zip(weights, starts, strict=True)]
    dist_spec = [
        float(torch.linalg.matrix_norm(w - w0, ord=2)) ** 2
        for w, w0 in zip(weights, starts, strict=True)
    ]
    gamma_sq = r.margin**2
    d = 2
    assert r.layers == ["0.weight", "2.weight"] and r.num_layers == d
    assert r.num_params == sum(p.numel() for p in model.parameters()) == 43
    assert r.layer_spectral == pytest.approx([math.sqrt(s) for s in spec])
    assert r.log_prod_of_spec == pytest.approx(math.log(spec[0] * spec[1]))
    assert r.log_prod_of_fro == pytest.approx(math.log(fro[0] * fro[1]))
    assert r.log_prod_of_spec_over_margin == pytest.approx(math.log(spec[0] * spec[1] / gamma_sq))
    assert r.log_prod_of_fro_over_margin == pytest.approx(math.log(fro[0] * fro[1] / gamma_sq))
    assert r.log_sum_of_spec == pytest.approx(math.log(d * (spec[0] * spec[1]) ** (1 / d)))
    assert r.log_sum_of_fro == pytest.approx(math.log(d * (fro[0] * fro[1]) ** (1 / d)))
    assert r.log_sum_of_fro_over_margin == pytest.approx(
        math.log(d * (fro[0] * fro[1] / gamma_sq) ** (1 / d))
    )
    assert r.log_sum_of_spec_over_margin == pytest.approx(
        math.log(d * (spec[0] * spec[1] / gamma_sq) ** (1 / d))
    )
    assert r.fro_over_spec == pytest.approx(fro[0] / spec[0] + fro[1] / spec[1])
    assert r.log_spec_orig_main == pytest.approx(
        math.log(spec[0] * spec[1] / gamma_sq * (fro[0] / spec[0] + fro[1] / spec[1]))
    )
    assert r.log_spec_init_main == pytest.approx(
        math.log(spec[0] * spec[1] / gamma_sq * (dist_fro[0] / spec[0] + dist_fro[1] / spec[1]))
    )
    assert r.param_norm == pytest.approx(sum(fro))
    assert r.fro_dist == pytest.approx(sum(dist_fro))
    assert r.dist_spec_init == pytest.approx(sum(dist_spec))
    w, w0 = flatten(model.state_dict()), flatten(init.state_dict())
    assert r.l2 == pytest.approx(float(w.norm()))
    assert r.l2_dist == pytest.approx(float((w - w0).norm()))
    assert r.inverse_margin == pytest.approx(1 / gamma_sq)
    assert r.init == "anchor"


def test_path_norm_is_the_closed_form_of_a_two_layer_relu_net(measured):
    model, _, _, r = measured
    w1, b1 = model[0].weight.detach(), model[0].bias.detach()
    w2, b2 = model[2].weight.detach(), model[2].bias.detach()
    # every path input -> hidden -> output contributes the product of its squared weights
    expected = float((w2**2 @ (w1**2 @ torch.ones(4, dtype=torch.float64) + b1**2) + b2**2).sum())
    assert r.path_norm == pytest.approx(expected, rel=1e-12)
    assert r.path_norm_over_margin == pytest.approx(expected / r.margin**2)


def test_margin_is_the_tenth_percentile_of_fixed_logits():
    logits = torch.tensor(
        [[3.0, 1.0, 0.5], [0.2, 2.0, 2.5], [1.0, 1.0, 4.0], [0.0, -1.0, -3.0], [5.0, 0.0, 4.0]] * 4,
        dtype=torch.float64,
    )  # 20 samples
    targets = torch.tensor([0, 1, 2, 0, 0] * 4)
    targets[5] = 2  # margin of sample 5 ([3, 1, 0.5] for class 2) = 0.5 - 3 = -2.5
    margins = sorted(
        float(logits[i, targets[i]] - torch.cat([logits[i, :c], logits[i, c + 1 :]]).max())
        for i, c in enumerate(targets.tolist())
    )
    identity = nn.Linear(3, 3, bias=False).double()
    with torch.no_grad():
        identity.weight.copy_(torch.eye(3, dtype=torch.float64))
    data = [(logits[:7], targets[:7]), (logits[7:], targets[7:])]
    r = GeneralizationMeasures(**CHEAP).measure(identity, data, init=identity)
    assert r.margin == pytest.approx(margins[1])  # the floor(20 / 10) = 2nd smallest
    assert r.margin == pytest.approx(-0.5)
    assert r.error == pytest.approx(sum(m < 0 for m in margins) / 20)
    assert r.fro_dist == 0 and r.l2_dist == 0 and r.log_spec_init_main == -math.inf


def test_hessian_measures_come_from_the_hessian_probes_and_are_exact_at_full_budget(
    make_case,
):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    case = make_case("tiny", model, batches())
    size = case.hessian.shape[0]  # 35 parameters
    probe = GeneralizationMeasures(
        hessian_trace_matvecs=3 * size, hessian_max_iter=size, num_samples=2, search_depth=2
    )
    r = probe.measure(model, case.batches, init=model)
    eigenvalues = torch.linalg.eigvalsh(case.hessian)
    assert r.hessian_trace == pytest.approx(float(torch.trace(case.hessian)), rel=1e-8)
    assert r.hessian_top_eigenvalue == pytest.approx(float(eigenvalues[-1]), rel=1e-6)
    assert r.loss == pytest.approx(case.loss)


def test_measures_do_not_depend_on_how_the_data_is_split_into_batches(measured):
    model, init, data, r = measured
    whole = [(torch.cat([x for x, _ in data]), torch.cat([y for _, y in data]))]
    other = GeneralizationMeasures(**CHEAP).measure(model, whole, init=init)
    for key, value in r.scalars().items():
        assert other.scalars()[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_the_model_is_not_changed(measured, fingerprint, assert_same_fingerprint):
    _, init, data, _ = measured
    model = moved(init)
    model.train()
    before = fingerprint(model)
    GeneralizationMeasures(**CHEAP).measure(model, data, init=init)
    assert_same_fingerprint(before, fingerprint(model))


def test_result_round_trips_and_logs_every_scalar(measured):
    r = measured[3]
    again = GeneralizationMeasuresResult.from_dict(r.to_dict())
    assert again == r
    scalars = r.scalars()
    for key in (
        "pacbayes_flatness",
        "pacbayes_mag_flatness",
        "sharpness_flatness",
        "sharpness_mag_flatness",
        "log_spec_init_main",
        "path_norm_over_margin",
        "margin",
        "num_params",
    ):
        assert key in scalars
    assert "hessian_trace" not in scalars  # skipped (None) with hessian_trace_matvecs=0
    assert scalars["pacbayes_flatness"] == pytest.approx(1 / r.pacbayes_sigma**2)
    assert scalars["sharpness_flatness"] == pytest.approx(1 / r.sharpness_alpha**2)
    m = r.num_samples
    assert r.pacbayes_init == pytest.approx(
        r.l2_dist**2 / (4 * r.pacbayes_sigma**2) + math.log(m / r.pacbayes_sigma) + 10
    )
    assert r.pacbayes_orig == pytest.approx(
        r.l2**2 / (4 * r.pacbayes_sigma**2) + math.log(m / r.pacbayes_sigma) + 10
    )


def test_error_criterion_uses_the_top1_error(measured):
    model, init, data, _ = measured
    r = GeneralizationMeasures(**{**CHEAP, "criterion": "error", "target": 0.2}).measure(
        model, data, init=init
    )
    assert r.criterion == "error" and r.pacbayes_sigma > 0


def test_init_is_required_outside_training(measured):
    model, _, data, _ = measured
    with pytest.raises(ConfigError, match="init"):
        GeneralizationMeasures(**CHEAP).measure(model, data)


def test_outputs_that_are_not_class_logits_are_refused():
    model = nn.Linear(4, 1).double()
    data = [(torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64))]
    with pytest.raises(ConfigError, match="margin"):
        GeneralizationMeasures(**CHEAP).measure(model, data, loss_fn=F.mse_loss, init=model)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": 0}, "target"),
        ({"criterion": "accuracy"}, "criterion"),
        ({"num_samples": 0}, "num_samples"),
        ({"magnitude_eps": -1}, "magnitude_eps"),
        ({"sharpness_steps": 0}, "sharpness_steps"),
        ({"start_scale": 0}, "start_scale"),
        ({"search_depth": -1}, "search_depth"),
        ({"hessian_trace_matvecs": 2}, "hessian_trace_matvecs"),
        ({"hessian_max_iter": -1}, "hessian_max_iter"),
        ({"batching": "fast"}, "batching"),
        ({"init": "epoch:x"}, "init"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GeneralizationMeasures(**kwargs)


def test_margin_gather_puts_each_rank_at_its_offset():
    """Two fake ranks whose sums add the other rank's (known) contribution."""
    model = two_layer()
    data = batches()
    point = snapshot(model, F.cross_entropy)
    from lsuite.probes.margins import margins

    single = margins(point, DataSource(data))
    other = margins(point, DataSource(data[1:]))  # rank 1's samples, computed in one process

    def reduce_sum(t):
        if t.shape == (2,) and not t.any():
            return t  # the status vector before each sum: all well
        if t.numel() == 1:  # the sample count
            return t + 12
        if t.numel() == 2:  # per-rank counts: rank 1 holds 12 samples
            return t + torch.tensor([0.0, 12.0], dtype=t.dtype)
        return t + torch.cat([torch.zeros(5, dtype=t.dtype), other])

    rank0 = margins(point, DataSource(data[:1], reduce_sum=reduce_sum, world_size=2, rank=0))
    assert torch.allclose(rank0, single)
