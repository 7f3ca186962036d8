import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from lsuite.errors import ConfigError
from lsuite.functional.params import flatten
from lsuite.linalg.operator import DenseOperator
from lsuite.linalg.operator_eigenpairs import hessian_eigenpairs
from lsuite.probes.hessian_eigenvalues import HessianEigenvalues, HessianEigenvaluesResult
from lsuite.probes.hessian_operator import HessianOperator

CONF = Path(__file__).resolve().parents[2] / "conf" / "probes"


def dense_eigs(h):
    values, vectors = torch.linalg.eigh(h)
    return values, vectors.T  # ascending, rows


def assert_vectors_match_up_to_sign(ours, exact, atol):
    for u, v in zip(ours, exact, strict=True):
        assert min(torch.linalg.norm(u - v), torch.linalg.norm(u + v)) < atol


@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_eigenpairs_match_the_dense_hessian(case, which):
    op = HessianOperator(case.point(), case.data()["train"])
    values, vectors = hessian_eigenpairs(
        op, 3, generator=torch.Generator().manual_seed(0), which=which
    )
    exact_values, exact_vectors = dense_eigs(case.hessian)
    if which == "largest":
        exact_values, exact_vectors = exact_values.flip(0)[:3], exact_vectors.flip(0)[:3]
    else:
        exact_values, exact_vectors = exact_values[:3], exact_vectors[:3]
    assert values.dtype == torch.float64 and values.shape == (3,)
    assert vectors.shape == (3, op.size)
    scale = float(exact_values.abs().max())
    assert torch.allclose(values, exact_values, rtol=0, atol=1e-6 * scale)
    assert_vectors_match_up_to_sign(vectors, exact_vectors, atol=1e-4)
    assert op.num_matvecs < op.size  # Lanczos stopped on the residual rule


def test_quadratic_eigenvalues_are_exact(make_quadratic):
    eigenvalues = [7.0, 4.0, 3.5, 1.0, 0.0, -0.5, -2.0, -3.0]
    case = make_quadratic(eigenvalues)
    result = HessianEigenvalues(k=2, which="both", return_eigenvectors=True).measure(
        case.model, case.batches, loss_fn=case.loss_fn
    )
    assert result.eigenvalues == pytest.approx([7.0, 4.0], abs=1e-10)
    assert result.smallest == pytest.approx([-3.0, -2.0], abs=1e-10)
    assert result.converged
    a = case.model.matrix
    for value, vector in zip(result.eigenvalues, result.eigenvectors, strict=True):
        v = vector["w"]
        assert torch.linalg.norm(a @ v - value * v) < 1e-8


def test_both_ends_come_from_one_lanczos_run(mlp):
    both = HessianEigenvalues(k=2, which="both").measure(mlp.model, mlp.batches)
    top = HessianEigenvalues(k=2).measure(mlp.model, mlp.batches)
    exact = torch.linalg.eigvalsh(mlp.hessian)
    assert both.eigenvalues == pytest.approx(exact.flip(0)[:2].tolist(), rel=1e-6)
    assert both.smallest == pytest.approx(exact[:2].tolist(), rel=1e-6)
    assert top.smallest is None and top.smallest_residuals is None
    assert (
        both.num_matvecs
        < top.num_matvecs
        + HessianEigenvalues(k=2, which="smallest").measure(mlp.model, mlp.batches).num_matvecs
    )


def test_residuals_are_true_residuals(cnn):
    result = HessianEigenvalues(k=2, which="both", tol=1e-3, return_eigenvectors=True).measure(
        cnn.model, cnn.batches
    )
    h = cnn.hessian
    norm = float(torch.linalg.eigvalsh(h).abs().max())
    pairs = [
        *zip(result.eigenvalues, result.residuals, result.eigenvectors, strict=True),
        *zip(result.smallest, result.smallest_residuals, result.smallest_eigenvectors, strict=True),
    ]
    for value, residual, vector in pairs:
        v = flatten(vector)
        true = float(torch.linalg.norm(h @ v - value * v))
        assert true == pytest.approx(residual, rel=1e-3, abs=1e-12)
        assert residual <= 1e-3 * norm * 1.001


def test_eigenvectors_are_parameter_dicts_left_out_of_the_record(mlp):
    result = HessianEigenvalues(k=2, return_eigenvectors=True).measure(mlp.model, mlp.batches)
    point = mlp.point()
    assert len(result.eigenvectors) == 2
    for vector in result.eigenvectors:
        assert {k: v.shape for k, v in vector.items()} == {
            k: v.shape for k, v in point.params.items()
        }
        assert float(torch.linalg.norm(flatten(vector))) == pytest.approx(1.0, rel=1e-10)
    record = json.loads(json.dumps(result.to_dict()))
    assert "eigenvectors" not in record and "smallest_eigenvectors" not in record
    assert record["eigenvalues"] == result.eigenvalues
    assert HessianEigenvalues(k=2).measure(mlp.model, mlp.batches).eigenvectors is None


def test_scalars(mlp):
    result = HessianEigenvalues(k=2, which="both").measure(mlp.model, mlp.batches)
    scalars = result.scalars()
    assert scalars["top_eigenvalue"] == result.eigenvalues[0] == scalars["eigenvalue_0"]
    assert scalars["eigenvalue_1"] == result.eigenvalues[1]
    assert scalars["smallest_eigenvalue"] == result.smallest[0]
    assert scalars["num_matvecs"] == result.num_matvecs
    assert isinstance(result, HessianEigenvaluesResult)
    only_smallest = HessianEigenvalues(which="smallest").measure(mlp.model, mlp.batches)
    assert only_smallest.eigenvalues == [] and "top_eigenvalue" not in only_smallest.scalars()


def test_scaling_the_loss_scales_the_eigenvalues_and_data_split_does_not_matter(mlp):
    base = HessianEigenvalues(k=2, tol=1e-8).measure(mlp.model, mlp.batches)
    x = torch.cat([b[0] for b in mlp.batches])
    y = torch.cat([b[1] for b in mlp.batches])
    merged = HessianEigenvalues(k=2, tol=1e-8).measure(mlp.model, [(x, y)])
    scaled = HessianEigenvalues(k=2, tol=1e-8).measure(
        mlp.model, mlp.batches, loss_fn=lambda o, t: 0.5 * F.cross_entropy(o, t)
    )
    assert merged.eigenvalues == pytest.approx(base.eigenvalues, rel=1e-10)
    assert scaled.eigenvalues == pytest.approx([0.5 * v for v in base.eigenvalues], rel=1e-10)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph")
def test_top_eigenvalue_agrees_with_pyhessian(case):
    from pyhessian import hessian

    x = torch.cat([b[0] for b in case.batches])
    y = torch.cat([b[1] for b in case.batches])
    torch.manual_seed(0)
    peer = hessian(copy.deepcopy(case.model), nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    values, _ = peer.eigenvalues(maxIter=300, tol=-math.inf)  # power iteration, no early stop
    ours = HessianEigenvalues(k=1).measure(case.model, [(x, y)])
    exact = float(torch.linalg.eigvalsh(case.hessian)[-1])
    assert ours.eigenvalues[0] == pytest.approx(exact, rel=1e-6)  # default tol=1e-4
    # PyHessian normalises by ||v|| + 1e-6, which biases its Rayleigh quotient by ~2e-6 / lambda.
    assert values[0] == pytest.approx(ours.eigenvalues[0], rel=1e-5)


def test_not_converging_logs_a_warning(mlp, caplog):
    with caplog.at_level("WARNING"):
        result = HessianEigenvalues(k=1, which="smallest", max_iter=3, tol=1e-12).measure(
            mlp.model, mlp.batches
        )
    assert not result.converged
    assert result.num_matvecs == 3
    assert "raise max_iter" in caplog.text


def test_measure_has_no_side_effects(cnn, fingerprint, assert_same_fingerprint):
    model = copy.deepcopy(cnn.model)
    before = fingerprint(model)
    HessianEigenvalues(k=2, which="both", return_eigenvectors=True).measure(model, cnn.batches)
    HessianEigenvalues(k=1).measure(model, cnn.batches, bn_mode="train")
    assert_same_fingerprint(before, fingerprint(model))


def test_dense_operator_and_k_above_size():
    a = torch.diag(torch.tensor([3.0, 1.0, -2.0], dtype=torch.float64))
    values, _ = hessian_eigenpairs(DenseOperator(a), 3, generator=torch.Generator().manual_seed(0))
    assert values.tolist() == pytest.approx([3.0, 1.0, -2.0])
    with pytest.raises(ConfigError, match=r"^k: got 4; expected at most the 3 parameters$"):
        hessian_eigenpairs(DenseOperator(a), 4, generator=torch.Generator())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, r"^k: got 0; expected an int >= 1$"),
        ({"k": True}, r"^k: got True; expected an int >= 1$"),
        (
            {"which": "all"},
            r"^which: got 'all'; expected one of \['largest', 'smallest', 'both'\]$",
        ),
        ({"max_iter": 0, "k": 2}, r"^max_iter: got 0; expected an int >= k \(2\) or null$"),
        ({"tol": 0.0}, r"^tol: got 0.0; expected a float > 0$"),
        ({"return_eigenvectors": 1}, r"^return_eigenvectors: got 1; expected true or false$"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        HessianEigenvalues(**kwargs)


def test_function_rejects_bad_which(mlp):
    op = HessianOperator(mlp.point(), mlp.data()["train"])
    with pytest.raises(
        ConfigError, match=r"^which: got 'both'; expected one of \['largest', 'smallest'\]$"
    ):
        hessian_eigenpairs(op, 1, generator=torch.Generator(), which="both")


def test_yaml_instantiates_the_probe():
    from hydra.utils import instantiate

    cfg = OmegaConf.load(CONF / "hessian_eigenvalues.yaml")
    assert list(cfg) == ["hessian_eigenvalues"]
    probe = instantiate(cfg.hessian_eigenvalues.probe)
    assert isinstance(probe, HessianEigenvalues)
    assert probe.name == "hessian_eigenvalues"
