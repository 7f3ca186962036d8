"""Tiny float64 models, batches and ground-truth Hessians shared by the Hessian probe tests."""

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lsuite.callbacks.training_state import fingerprint_differences, training_fingerprint
from lsuite.functional.params import flatten, unflatten
from lsuite.probes.data_source import DataSource
from lsuite.probes.point import snapshot

BATCH_SIZES = (5, 9, 3)


@dataclass
class HessianCase:
    """A model, its batches (of different sizes) and the dense Hessian of the mean loss."""

    name: str
    model: nn.Module
    batches: list
    loss_fn: object
    hessian: torch.Tensor  # (P, P)
    gradient: torch.Tensor  # (P,)
    loss: float

    def point(self, bn_mode="eval"):
        return snapshot(self.model, self.loss_fn, bn_mode=bn_mode)

    def data(self, batches=None):
        return {"train": DataSource(self.batches if batches is None else batches)}


def mean_loss_fn(point, batches):
    """Return ``flat_params -> mean loss over all batches`` (sample-weighted), for torch.func."""
    total = sum(int(y.shape[0]) for _, y in batches)

    def loss(flat):
        params = unflatten(flat, point.params)
        return sum(
            (y.shape[0] / total) * point.loss_fn(point.outputs(x, params), y) for x, y in batches
        )

    return loss


def make_case(name, model, batches, loss_fn=F.cross_entropy):
    point = snapshot(model, loss_fn)
    loss = mean_loss_fn(point, batches)
    flat = flatten(point.params)
    return HessianCase(
        name=name,
        model=model,
        batches=batches,
        loss_fn=loss_fn,
        hessian=torch.func.hessian(loss)(flat).detach(),
        gradient=torch.func.grad(loss)(flat).detach(),
        loss=float(loss(flat)),
    )


def mlp_case(seed=0):
    """MLP 6-16-10-3 with tanh (315 parameters), three batches of 5, 9 and 3 samples."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 10), nn.Tanh(), nn.Linear(10, 3)
    )
    model = model.double()
    batches = [
        (
            torch.randn(n, 6, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (n,), generator=g),
        )
        for n in BATCH_SIZES
    ]
    return make_case("mlp", model, batches)


def cnn_case(seed=0):
    """Conv(1->3, 3x3) + BatchNorm (running statistics set) + tanh + linear: 183 parameters."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.BatchNorm2d(3),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 3),
    ).double()
    with torch.no_grad():
        model[1].running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        model[1].running_var.copy_(torch.tensor([0.5, 1.5, 2.0]))
        model[1].weight.copy_(torch.tensor([1.2, 0.8, -0.9]))
        model[1].bias.copy_(torch.tensor([0.1, 0.0, -0.2]))
    model.train()  # the probe must not depend on (or change) the live module's mode
    batches = [
        (
            torch.randn(n, 1, 6, 6, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (n,), generator=g),
        )
        for n in BATCH_SIZES
    ]
    return make_case("cnn_bn", model, batches)


class Quadratic(nn.Module):
    """A "model" whose output is ``0.5 (w - w*)^T A (w - w*)`` for every sample."""

    def __init__(self, eigenvalues, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        size = len(eigenvalues)
        basis, _ = torch.linalg.qr(torch.randn(size, size, generator=g, dtype=torch.float64))
        self.register_buffer(
            "matrix",
            basis @ torch.diag(torch.as_tensor(eigenvalues, dtype=torch.float64)) @ basis.T,
        )
        self.register_buffer("optimum", torch.randn(size, generator=g, dtype=torch.float64))
        self.w = nn.Parameter(torch.randn(size, generator=g, dtype=torch.float64))

    def forward(self, x):
        d = self.w - self.optimum
        return (0.5 * d @ self.matrix @ d).expand(x.shape[0])


def quadratic_loss(outputs, targets):
    """Mean of the per-sample outputs; the targets are ignored."""
    del targets
    return outputs.mean()


def quadratic_case(eigenvalues, seed=0):
    model = Quadratic(eigenvalues, seed)
    batches = [(torch.zeros(n, 1, dtype=torch.float64), torch.zeros(n)) for n in (2, 3)]
    return make_case("quadratic", model, batches, quadratic_loss)


@pytest.fixture(scope="session")
def mlp():
    return mlp_case()


@pytest.fixture(scope="session")
def cnn():
    return cnn_case()


@pytest.fixture(scope="session", params=["mlp", "cnn_bn"])
def case(request):
    return request.getfixturevalue("mlp" if request.param == "mlp" else "cnn")


def fingerprint(module):
    """Everything a probe must leave untouched (the library's own fingerprint, plus grad mode)."""
    return {**training_fingerprint(module), "grad_enabled": torch.is_grad_enabled()}


def assert_same_fingerprint(before, after):
    assert not fingerprint_differences(before, after)


@pytest.fixture(name="fingerprint")
def _fingerprint():
    return fingerprint


@pytest.fixture(name="assert_same_fingerprint")
def _assert_same_fingerprint():
    return assert_same_fingerprint


@pytest.fixture(name="make_quadratic")
def _make_quadratic():
    return quadratic_case


@pytest.fixture(name="make_case")
def _make_case():
    return make_case


@pytest.fixture(name="mean_loss")
def _mean_loss():
    return mean_loss_fn
