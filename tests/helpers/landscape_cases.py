"""Tiny models, batches, plain-loop references and side-effect fingerprints for landscape tests."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lsuite.callbacks.training_state import fingerprint_differences, training_fingerprint

BATCH_SIZES = (5, 9, 3)


@pytest.fixture(autouse=True)
def one_thread():
    """Run each test on one thread, then restore the setting.

    The models here are tiny and gain nothing from more threads; on a shared, loaded machine a
    second thread made their ops up to 20x slower (each parallel region waits for it).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mlp(seed=0, dtype=torch.float32):
    """MLP 6-16-3 with tanh (163 parameters)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def cnn_bn(seed=0, dtype=torch.float32):
    """Conv(1->3) + BatchNorm (running statistics set) + tanh + linear; left in train mode."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(), nn.Linear(48, 3)
    ).to(dtype)
    with torch.no_grad():
        model[1].running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        model[1].running_var.copy_(torch.tensor([0.5, 1.5, 2.0]))
        model[1].weight.copy_(torch.tensor([1.2, 0.8, -0.9]))
        model[1].bias.copy_(torch.tensor([0.1, 0.0, -0.2]))
    model.train()  # probes must not depend on, or change, the live module's mode
    return model


def batches_for(model, seed=0, sizes=BATCH_SIZES):
    g = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    first = next(m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    shape = (6,) if isinstance(first, nn.Linear) else (1, 6, 6)
    return [
        (torch.randn(n, *shape, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g))
        for n in sizes
    ]


def plain_loop(model, weights, batches, loss_fn=F.cross_entropy):
    """Loss and accuracy of a deep copy of ``model`` loaded with each of ``weights`` (eval mode)."""
    work = copy.deepcopy(model).eval()
    total = sum(len(y) for _, y in batches)
    losses, accuracies = [], []
    for w in weights:
        state = work.state_dict()
        state.update(w)
        work.load_state_dict(state)
        with torch.no_grad():
            loss = sum(loss_fn(work(x), y).double() * len(y) for x, y in batches) / total
            correct = sum((work(x).argmax(1) == y).sum().item() for x, y in batches) / total
        losses.append(float(loss))
        accuracies.append(correct)
    return losses, accuracies


def named(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


class Quadratic(nn.Module):
    """A "model" whose output is ``0.5 (w - w*)^T A (w - w*)`` for every sample (float64)."""

    def __init__(self, eigenvalues, seed=0, at_optimum=False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        size = len(eigenvalues)
        basis, _ = torch.linalg.qr(torch.randn(size, size, generator=g, dtype=torch.float64))
        values = torch.as_tensor(eigenvalues, dtype=torch.float64)
        self.register_buffer("matrix", basis @ torch.diag(values) @ basis.T)
        self.register_buffer("optimum", torch.randn(size, generator=g, dtype=torch.float64))
        start = self.optimum.clone() if at_optimum else torch.randn(size, generator=g).double()
        self.w = nn.Parameter(start)

    def forward(self, x):
        d = self.w - self.optimum
        return (0.5 * d @ self.matrix @ d).expand(x.shape[0])

    def value(self, w):
        d = w - self.optimum
        return float(0.5 * d @ self.matrix @ d)

    def gradient(self):
        return (self.matrix @ (self.w - self.optimum)).detach()


def quadratic_loss(outputs, targets):
    """Mean of the per-sample outputs; targets are ignored (no accuracy)."""
    del targets
    return outputs.mean()


def quadratic_batches():
    return [(torch.zeros(n, 1, dtype=torch.float64), torch.zeros(n)) for n in (2, 3)]


def fingerprint(module):
    """Everything a probe must leave untouched (the library's own fingerprint, plus grad mode)."""
    return {**training_fingerprint(module), "grad_enabled": torch.is_grad_enabled()}


def assert_same_fingerprint(before, after):
    assert not fingerprint_differences(before, after)


def with_grads(model, batches):
    """Give ``model`` some .grad values so a test can check they are left alone."""
    loss = sum(F.cross_entropy(model(x), y) for x, y in batches)
    loss.backward()
    return model
