import copy
import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lsuite.errors import ConfigError
from lsuite.probes.hessian_spectrum import HessianSpectrum, HessianSpectrumResult

CONF = Path(__file__).resolve().parents[2] / "conf" / "probes"


def test_moments_match_trace_and_frobenius_norm(case):
    runs = 30
    # Two Gauss nodes integrate polynomials up to degree 3 exactly: four steps are plenty.
    result = HessianSpectrum(num_runs=runs, lanczos_steps=4).measure(case.model, case.batches)
    h = case.hessian
    p = h.shape[0]
    assert result.num_params == p
    assert result.num_matvecs == runs * 4
    firsts, seconds = [], []
    for nodes, weights in zip(result.nodes, result.weights, strict=True):
        nodes = torch.tensor(nodes, dtype=torch.float64)
        weights = torch.tensor(weights, dtype=torch.float64)
        assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)
        firsts.append(float((weights * nodes).sum()))
        seconds.append(float((weights * nodes**2).sum()))
    # Each run's moments are Hutchinson samples of tr(H)/P and ||H||_F^2/P (Rademacher start).
    for samples, b in ((firsts, h), (seconds, h @ h)):
        sd = math.sqrt(2 * (torch.sum(b**2) - torch.sum(torch.diag(b) ** 2))) / p
        mean = sum(samples) / runs
        assert abs(mean - float(torch.trace(b)) / p) < 4.5 * sd / math.sqrt(runs)
    assert result.trace == pytest.approx(p * sum(firsts) / runs, rel=1e-12)


def test_ritz_values_bracket_the_spectrum_and_density_integrates_to_one(mlp):
    result = HessianSpectrum(num_runs=3, lanczos_steps=40).measure(mlp.model, mlp.batches)
    exact = torch.linalg.eigvalsh(mlp.hessian)
    assert (
        float(exact[0])
        <= result.min_ritz_value
        < 0
        < result.max_ritz_value
        <= float(exact[-1]) + 1e-12
    )
    # 40 steps with full reorthogonalisation resolve the extreme eigenvalues.
    assert result.max_ritz_value == pytest.approx(float(exact[-1]), rel=1e-6)
    assert result.min_ritz_value == pytest.approx(float(exact[0]), rel=1e-6)
    grid, density = torch.tensor(result.grid), torch.tensor(result.density)
    assert len(grid) == 512 and torch.all(grid[1:] > grid[:-1])
    assert float(torch.trapezoid(density, grid)) == pytest.approx(1.0, abs=0.02)
    below = -0.01 * (result.max_ritz_value - result.min_ritz_value)
    negative = (
        sum(
            sum(w for n, w in zip(nodes, weights, strict=True) if n < below)
            for nodes, weights in zip(result.nodes, result.weights, strict=True)
        )
        / 3
    )
    assert result.negative_mass == pytest.approx(negative)
    assert 0 < result.negative_mass < 1


def test_quadratic_spectrum_is_exact(make_quadratic):
    eigenvalues = [4.0, 4.0, 1.0, 1.0, 1.0, -2.0]
    case = make_quadratic(eigenvalues)
    result = HessianSpectrum(num_runs=2, lanczos_steps=20, sigma=0.001).measure(
        case.model, case.batches, loss_fn=case.loss_fn
    )
    assert result.num_matvecs == 6  # Lanczos stops after the 3 distinct eigenvalues, per run
    for nodes in result.nodes:
        assert nodes == pytest.approx([-2.0, 1.0, 4.0], abs=1e-10)
    assert result.min_ritz_value == pytest.approx(-2.0)
    grid = torch.tensor(result.grid)
    peak = grid[torch.tensor(result.density).argmax()]
    assert float(peak) in (
        pytest.approx(-2.0, abs=0.02),
        pytest.approx(1.0, abs=0.02),
        pytest.approx(4.0, abs=0.02),
    )
    assert result.sigma == pytest.approx(0.001 * 6.0)


def test_scaling_the_loss_scales_the_spectrum(mlp):
    base = HessianSpectrum(num_runs=1, lanczos_steps=8).measure(mlp.model, mlp.batches)
    scaled = HessianSpectrum(num_runs=1, lanczos_steps=8).measure(
        mlp.model, mlp.batches, loss_fn=lambda o, t: 3.0 * torch.nn.functional.cross_entropy(o, t)
    )
    assert scaled.nodes[0] == pytest.approx([3.0 * v for v in base.nodes[0]], rel=1e-9)
    assert scaled.weights[0] == pytest.approx(base.weights[0], rel=1e-8, abs=1e-12)
    assert scaled.negative_mass == pytest.approx(base.negative_mass)


def test_result_is_json_safe_with_scalars(mlp):
    result = HessianSpectrum(num_runs=2, lanczos_steps=5, num_points=16).measure(
        mlp.model, mlp.batches
    )
    assert isinstance(result, HessianSpectrumResult)
    record = json.loads(json.dumps(result.to_dict()))
    assert len(record["nodes"]) == 2 and len(record["density"]) == 16
    scalars = result.scalars()
    assert {"min_ritz_value", "max_ritz_value", "negative_mass", "trace", "num_matvecs"} <= set(
        scalars
    )
    assert all(isinstance(v, float) for v in scalars.values())


def test_measure_has_no_side_effects(cnn, fingerprint, assert_same_fingerprint):
    model = copy.deepcopy(cnn.model)
    before = fingerprint(model)
    HessianSpectrum(num_runs=2, lanczos_steps=10).measure(model, cnn.batches)
    HessianSpectrum(num_runs=1, lanczos_steps=5).measure(model, cnn.batches, bn_mode="train")
    assert_same_fingerprint(before, fingerprint(model))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_runs": 0}, r"^num_runs: got 0; expected an int >= 1$"),
        ({"lanczos_steps": 0}, r"^lanczos_steps: got 0; expected an int >= 1$"),
        ({"num_points": 1}, r"^num_points: got 1; expected an int >= 2$"),
        ({"sigma": 0}, r"^sigma: got 0; expected a float > 0$"),
        ({"margin": -0.1}, r"^margin: got -0.1; expected a float >= 0$"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        HessianSpectrum(**kwargs)


def test_yaml_instantiates_the_probe():
    from hydra.utils import instantiate

    cfg = OmegaConf.load(CONF / "hessian_spectrum.yaml")
    assert list(cfg) == ["hessian_spectrum"]
    probe = instantiate(cfg.hessian_spectrum.probe)
    assert isinstance(probe, HessianSpectrum)
    assert probe.lanczos_steps == 80


def test_negative_mass_ignores_the_near_zero_bulk(make_quadratic):
    g = torch.Generator().manual_seed(3)
    bulk = (torch.rand(60, generator=g, dtype=torch.float64) - 0.5) * 2e-4  # |lambda| < 1e-4
    case = make_quadratic([10.0, 5.0, *bulk.tolist()])
    probe = HessianSpectrum(num_runs=8, lanczos_steps=62)
    result = probe.measure(case.model, case.batches, loss_fn=case.loss_fn)
    assert result.negative_mass == 0.0 and result.negative_tol == 0.01
    below_zero = sum(
        sum(w for n, w in zip(nodes, weights, strict=True) if n < 0)
        for nodes, weights in zip(result.nodes, result.weights, strict=True)
    ) / len(result.nodes)
    assert below_zero > 0.2  # what counting every node below 0 used to report
    strict = HessianSpectrum(num_runs=8, lanczos_steps=62, negative_tol=0.0)
    assert strict.measure(case.model, case.batches, loss_fn=case.loss_fn).negative_mass > 0.2


def test_negative_mass_counts_real_negative_eigenvalues(make_quadratic):
    case = make_quadratic([10.0, 5.0] + [-3.0] * 10 + [0.0] * 40)
    result = HessianSpectrum(num_runs=30, lanczos_steps=10).measure(
        case.model, case.batches, loss_fn=case.loss_fn
    )
    # each run's mass on -3 is |P v|^2 / |v|^2 for a Rademacher v: 10/52 on average
    assert result.negative_mass == pytest.approx(10 / 52, abs=0.05)
    with pytest.raises(ConfigError, match=r"negative_tol: got 1\.5"):
        HessianSpectrum(negative_tol=1.5)
