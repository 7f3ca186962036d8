import itertools
import math

import pytest
import torch

from lsuite.linalg.operator import DenseOperator
from lsuite.linalg.trace_estimators import MIN_SAMPLES, hutchinson, hutchpp, rademacher

F64 = torch.float64
CPU = torch.device("cpu")


def symmetric(n, seed=0, decay=None):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    if decay is None:
        values = torch.randn(n, generator=g, dtype=F64) + 0.3
    else:
        values = 50.0 * decay ** torch.arange(n, dtype=F64) + 0.01 * torch.randn(
            n, generator=g, dtype=F64
        )
    return q @ torch.diag(values) @ q.T


def hutchinson_sd(a, m):
    """Standard deviation of the m-sample Hutchinson mean with Rademacher vectors."""
    return math.sqrt(2 * (torch.sum(a**2) - torch.sum(torch.diag(a) ** 2)) / m)


def estimate(fn, a, seed, **kwargs):
    op = DenseOperator(a)
    g = torch.Generator().manual_seed(seed)
    out = fn(op.matmat, op.size, generator=g, dtype=F64, device=CPU, **kwargs)
    assert op.num_matvecs == out.num_matvecs
    return out


def test_rademacher_draws_signs_from_the_generator():
    a = rademacher(3, 1000, torch.Generator().manual_seed(0), F64, CPU)
    b = rademacher(3, 1000, torch.Generator().manual_seed(0), F64, CPU)
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) == {-1.0, 1.0}
    assert abs(a.mean()) < 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hutchinson_error_is_within_its_known_variance(seed):
    a = symmetric(80, seed)
    out = estimate(hutchinson, a, seed, num_matvecs=32)
    assert out.num_matvecs == out.num_samples == 32
    assert abs(out.trace - float(torch.trace(a))) < 4.5 * hutchinson_sd(a, 32)


@pytest.mark.parametrize("fn", [hutchinson, hutchpp], ids=["hutchinson", "hutchpp"])
def test_reported_stderr_matches_the_empirical_spread(fn):
    a = symmetric(40, 3)
    runs = [estimate(fn, a, seed, num_matvecs=24, block_size=8) for seed in range(300)]
    values = torch.tensor([r.trace for r in runs], dtype=F64)
    rms_stderr = math.sqrt(sum(r.stderr**2 for r in runs) / len(runs))
    spread = float(values.std())
    # Unbiased: the mean of 300 runs is within 4.5 standard errors of the trace.
    assert abs(float(values.mean()) - float(torch.trace(a))) < 4.5 * spread / math.sqrt(300)
    assert 0.8 < rms_stderr / spread < 1.25
    if fn is hutchinson:
        assert spread == pytest.approx(hutchinson_sd(a, 24), rel=0.15)


def test_hutchpp_converges_within_its_budget_where_hutchinson_does_not():
    a = symmetric(300, 4, decay=0.5)  # a few dominant eigenvalues, as in network Hessians
    exact = float(torch.trace(a))
    assert hutchinson_sd(a, 60) / abs(exact) > 0.1
    for seed in range(3):
        out = estimate(hutchpp, a, seed, num_matvecs=60)
        assert out.num_matvecs == 60
        assert abs(out.trace - exact) / abs(exact) < 0.01
        assert abs(out.trace - exact) < 4.5 * out.stderr


def test_hutchpp_is_exact_when_the_sketch_spans_the_space():
    a = symmetric(10, 5)
    out = estimate(hutchpp, a, 0, num_matvecs=30, block_sizes=[3, 7])
    assert out.trace == pytest.approx(float(torch.trace(a)), rel=1e-12)
    assert out.num_matvecs == 20  # no residual samples are needed
    assert out.stderr == 0.0
    assert out.blocks.tolist() == pytest.approx(
        [float(torch.trace(a[:3, :3])), float(torch.trace(a[3:, 3:]))], rel=1e-10
    )


@pytest.mark.parametrize("fn", [hutchinson, hutchpp], ids=["hutchinson", "hutchpp"])
def test_block_traces_sum_to_the_trace_and_are_unbiased(fn):
    a = symmetric(30, 6)
    sizes = [5, 10, 15]
    runs = [estimate(fn, a, seed, num_matvecs=12, block_sizes=sizes) for seed in range(200)]
    for r in runs:
        assert float(r.blocks.sum()) == pytest.approx(r.trace, rel=1e-12, abs=1e-12)
    blocks = torch.stack([r.blocks for r in runs])  # (runs, B)
    starts = [0, 5, 15, 30]
    exact = torch.tensor([float(torch.trace(a[s:e, s:e])) for s, e in itertools.pairwise(starts)])
    sem = blocks.std(0) / math.sqrt(len(runs))
    assert torch.all((blocks.mean(0) - exact).abs() < 4.5 * sem)


@pytest.mark.parametrize("fn", [hutchinson, hutchpp], ids=["hutchinson", "hutchpp"])
def test_relative_standard_error_stops_early(fn):
    g = torch.Generator().manual_seed(7)
    a = torch.diag(1.0 + 0.01 * torch.rand(200, generator=g, dtype=F64)) + 1e-3 * symmetric(200, 7)
    out = estimate(fn, a, 0, num_matvecs=400, rel_stderr=0.01, block_size=4)
    assert out.converged
    assert out.num_samples >= MIN_SAMPLES
    assert out.num_matvecs < 400
    assert out.stderr <= 0.01 * abs(out.trace)
    budget = estimate(fn, a, 0, num_matvecs=400, rel_stderr=None, block_size=4)
    assert not budget.converged and budget.num_matvecs == 400


def test_stderr_is_nan_with_one_sample():
    out = estimate(hutchinson, symmetric(5, 8), 0, num_matvecs=1)
    assert out.num_samples == 1
    assert math.isnan(out.stderr)
