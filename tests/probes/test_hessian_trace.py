import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from lsuite.errors import ConfigError
from lsuite.probes.hessian_trace import HessianTrace, HessianTraceResult

CONF = Path(__file__).resolve().parents[2] / "conf" / "probes"


def hutchinson_sd(h, m):
    return math.sqrt(2 * (torch.sum(h**2) - torch.sum(torch.diag(h) ** 2)) / m)


def measure(case, seed=0, **kwargs):
    probe = HessianTrace(**kwargs)
    generator = torch.Generator().manual_seed(seed)
    return probe.measure(case.model, case.batches, loss_fn=case.loss_fn, generator=generator)


@pytest.mark.parametrize("seed", [0, 1])
def test_hutchinson_is_within_its_known_variance(case, seed):
    result = measure(case, seed, method="hutchinson", num_matvecs=40, rel_stderr=None)
    exact = float(torch.trace(case.hessian))
    assert result.num_matvecs == 40
    assert abs(result.trace - exact) < 4.5 * hutchinson_sd(case.hessian, 40)


def test_reported_stderr_matches_the_spread_over_seeds(mlp):
    for method in ("hutchinson", "hutchpp"):
        runs = [measure(mlp, s, method=method, num_matvecs=24, rel_stderr=None) for s in range(40)]
        spread = float(np.std([r.trace for r in runs], ddof=1))
        rms_stderr = math.sqrt(np.mean([r.stderr**2 for r in runs]))
        assert 0.7 < rms_stderr / spread < 1.4, method


def test_hutchpp_converges_within_its_budget(mlp):
    # 540 products (P = 315) are within 1%, where Hutchinson's standard deviation is still
    # above 10%. (With 3 P products the sketch spans weight space: exact, see the linalg tests.)
    exact = float(torch.trace(mlp.hessian))
    for seed in range(3):
        result = measure(mlp, seed, num_matvecs=540, rel_stderr=None)
        assert abs(result.trace - exact) / abs(exact) < 0.01
        assert abs(result.trace - exact) < 4.5 * result.stderr
    assert hutchinson_sd(mlp.hessian, 540) / abs(exact) > 0.1


def test_relative_stderr_stops_before_the_budget(make_quadratic):
    case = make_quadratic(torch.linspace(1.0, 2.0, 120).tolist())
    result = measure(case, 0, method="hutchinson", num_matvecs=500, rel_stderr=0.02, block_size=4)
    assert result.converged
    assert result.num_matvecs < 500
    assert result.stderr <= 0.02 * abs(result.trace)


def test_quadratic_trace_is_exact(make_quadratic):
    eigenvalues = [5.0, 3.0, -1.0, 0.5, 0.0, 2.0]
    case = make_quadratic(eigenvalues)
    result = measure(case, 0, num_matvecs=18, rel_stderr=None)
    assert result.trace == pytest.approx(sum(eigenvalues), rel=1e-12)
    assert result.stderr == 0.0
    assert result.num_matvecs == 12  # sketch and exact part; nothing left to sample


def test_per_layer_traces_are_the_diagonal_blocks(cnn):
    point = cnn.point()
    result = measure(cnn, 0, num_matvecs=3 * cnn.hessian.shape[0], rel_stderr=None, per_layer=True)
    assert list(result.per_layer) == list(point.params)
    start = 0
    for name, value in point.params.items():
        end = start + value.numel()
        assert result.per_layer[name] == pytest.approx(
            float(torch.trace(cnn.hessian[start:end, start:end])), rel=1e-9, abs=1e-12
        )
        start = end
    assert sum(result.per_layer.values()) == pytest.approx(result.trace, rel=1e-12)
    scalars = result.scalars()
    assert scalars["per_layer/0.weight"] == result.per_layer["0.weight"]
    assert set(result.per_layer_stderr) == set(result.per_layer)


def test_scaling_the_loss_scales_the_trace(mlp):
    model = copy.deepcopy(mlp.model)
    g = torch.Generator().manual_seed(0)
    base = HessianTrace(num_matvecs=30, rel_stderr=None).measure(model, mlp.batches, generator=g)
    g = torch.Generator().manual_seed(0)
    scaled = HessianTrace(num_matvecs=30, rel_stderr=None).measure(
        model, mlp.batches, loss_fn=lambda o, t: 2.5 * F.cross_entropy(o, t), generator=g
    )
    assert scaled.trace == pytest.approx(2.5 * base.trace, rel=1e-10)
    assert scaled.stderr == pytest.approx(2.5 * base.stderr, rel=1e-8)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph")
def test_agrees_with_pyhessian_on_the_same_batch(case):
    from pyhessian import hessian

    x = torch.cat([b[0] for b in case.batches])
    y = torch.cat([b[1] for b in case.batches])
    torch.manual_seed(0)
    peer = hessian(copy.deepcopy(case.model), nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    # PyHessian's stop test divides by the signed running mean, so tol=0 still stops once the
    # mean is negative; tol=-inf never stops.
    samples = peer.trace(maxIter=300, tol=-math.inf)
    assert len(samples) == 300
    peer_mean = float(np.mean(samples))
    peer_se = float(np.std(samples, ddof=1) / math.sqrt(len(samples)))
    ours = HessianTrace(num_matvecs=150, rel_stderr=None).measure(case.model, [(x, y)])
    exact = float(torch.trace(case.hessian))
    assert abs(ours.trace - peer_mean) < 4.5 * math.hypot(ours.stderr, peer_se)
    assert abs(ours.trace - exact) < 4.5 * ours.stderr
    assert abs(peer_mean - exact) < 4.5 * peer_se


def test_measure_has_no_side_effects(cnn, fingerprint, assert_same_fingerprint):
    model = copy.deepcopy(cnn.model)  # in train mode, with BatchNorm
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = fingerprint(model)
    HessianTrace(num_matvecs=12, per_layer=True).measure(model, cnn.batches, bn_mode="train")
    HessianTrace(num_matvecs=12).measure(model, cnn.batches)
    assert_same_fingerprint(before, fingerprint(model))


def test_same_generator_seed_same_result(mlp):
    a = measure(mlp, 3, num_matvecs=15, rel_stderr=None)
    b = measure(mlp, 3, num_matvecs=15, rel_stderr=None)
    c = measure(mlp, 4, num_matvecs=15, rel_stderr=None)
    assert a == b
    assert a.trace != c.trace


def test_result_is_json_safe_and_has_scalars(mlp):
    result = measure(mlp, 0, method="hutchinson", num_matvecs=1, rel_stderr=None)
    assert isinstance(result, HessianTraceResult)
    record = json.loads(json.dumps(result.to_dict()))
    assert record["method"] == "hutchinson"
    assert record["stderr"] == "nan"  # one sample has no standard error
    assert record["per_layer"] is None
    assert set(result.scalars()) == {"trace", "stderr", "num_matvecs"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_matvecs": 0, "method": "hutchinson"}, r"^num_matvecs: got 0; expected an int >= 1$"),
        ({"num_matvecs": 2}, r"^num_matvecs: got 2; expected an int >= 3 for method 'hutchpp'$"),
        ({"num_matvecs": 8.0}, r"^num_matvecs: got 8.0; expected an int"),
        (
            {"method": "xtrace"},
            r"^method: got 'xtrace'; expected one of \['hutchpp', 'hutchinson'\]$",
        ),
        ({"rel_stderr": 0}, r"^rel_stderr: got 0; expected a float > 0 or null$"),
        ({"block_size": 0}, r"^block_size: got 0; expected an int >= 1$"),
        ({"per_layer": "yes"}, r"^per_layer: got 'yes'; expected true or false$"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        HessianTrace(**kwargs)


def test_yaml_instantiates_the_probe():
    from hydra.utils import instantiate

    cfg = OmegaConf.load(CONF / "hessian_trace.yaml")
    assert list(cfg) == ["hessian_trace"]
    probe = instantiate(cfg.hessian_trace.probe)
    assert isinstance(probe, HessianTrace)
    assert probe.name == "hessian_trace"
