"""Small models of the zoo (every conf/model/ family and option) for the alignment tests."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lsuite.model.cnn import CNN
from lsuite.model.mlp import MLP
from lsuite.model.resnet import ResNet

CASES = {
    "mlp": lambda: MLP((1, 8, 8), 10, width=16, depth=3, dropout=0.1),
    "mlp-gelu": lambda: MLP((40,), 10, width=12, depth=2, activation="gelu"),
    "cnn1d": lambda: CNN((1, 40), 10, channels=(8, 12)),
    "cnn1d-batch-avg": lambda: CNN((1, 40), 10, channels=(8, 12), norm="batch", pool="avg"),
    "cnn2d-group-hidden": lambda: CNN((1, 8, 8), 10, channels=(8, 16), norm="group", hidden=12),
    "resnet-batch": lambda: ResNet((1, 8, 8), 10, depth=8, width=0.5),
    "resnet-group": lambda: ResNet((1, 8, 8), 10, depth=8, width=0.5, norm="group", num_groups=4),
    "resnet-none": lambda: ResNet((1, 8, 8), 10, depth=8, width=0.5, norm="none"),
    "resnet-pad": lambda: ResNet((1, 8, 8), 10, depth=8, width=0.5, shortcut="pad"),
}
INPUT_SHAPES = {"mlp-gelu": (40,), "cnn1d": (1, 40), "cnn1d-batch-avg": (1, 40)}


def make(name, seed=0, dtype=torch.float64):
    """Build a case with random weights and random BatchNorm affine params and statistics."""
    torch.manual_seed(seed)
    model = CASES[name]().to(dtype)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.3)
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.normal_(0, 0.3)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def inputs(name, batch=6, seed=0, dtype=torch.float64):
    """Random inputs of the case's shape."""
    shape = INPUT_SHAPES.get(name, (1, 8, 8))
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.fixture
def zoo():
    """The case builders: ``zoo.make(name)``, ``zoo.inputs(name)``, ``zoo.names``."""
    return SimpleNamespace(make=make, inputs=inputs, names=list(CASES))


def pytest_generate_tests(metafunc):
    """Expand ``case_name`` over every zoo case."""
    if "case_name" in metafunc.fixturenames:
        metafunc.parametrize("case_name", list(CASES))
