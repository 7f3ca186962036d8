import importlib
import inspect
from pathlib import Path

import pytest
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from lsuite.data.tensor_datamodule import TensorDataModule

CONF = Path(__file__).parents[2] / "conf" / "data"
NAMES = ["cifar10", "cifar100", "digits", "fashion_mnist", "mnist", "mnist1d"]


def load(name):
    """Load a data config as the main config composes it (with a top-level ``seed``)."""
    root = OmegaConf.create({"seed": 0, "data": OmegaConf.load(CONF / f"{name}.yaml")})
    return root.data


def test_every_data_config_is_listed():
    assert sorted(path.stem for path in CONF.glob("*.yaml")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_keys_are_the_constructor_arguments_with_defaults(name):
    config = OmegaConf.to_container(load(name), resolve=True)
    cls = get_class(config.pop("_target_"))
    parameters = inspect.signature(cls).parameters
    assert set(config) == set(parameters)
    for key, parameter in parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            assert config[key] == parameter.default, key
    assert config.get("download", False) is False  # never downloads by default


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_offline_configs_instantiate(name):
    module = instantiate(load(name))
    assert isinstance(module, TensorDataModule)


@pytest.mark.parametrize(
    ("name", "fixture"),
    [("mnist", "mnist_dir"), ("cifar10", "cifar10_dir"), ("cifar100", "cifar100_dir")],
)
def test_file_configs_instantiate(request, name, fixture):
    data_dir, _ = request.getfixturevalue(fixture)
    module = instantiate(load(name), data_dir=str(data_dir))
    module.setup("fit")
    x, _ = next(iter(module.train_dataloader()))
    assert x.shape[1:] == module.input_shape


def test_package_exports():
    data = importlib.import_module("lsuite.data")
    assert all(hasattr(data, name) for name in data.__all__)
