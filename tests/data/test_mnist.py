import importlib.machinery
import re
import sys
import types

import numpy as np
import pytest
import torch

from lsuite.data.mnist import FashionMNISTDataModule, MNISTDataModule
from lsuite.errors import ConfigError

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def test_reads_torchvision_layout(mnist_dir):
    data_dir, arrays = mnist_dir
    module = MNISTDataModule(str(data_dir), val_fraction=0.25, normalize=False)
    assert module.input_shape == (1, 28, 28)
    assert module.num_classes == 10
    module.setup("fit")
    assert (len(module.train_dataset), len(module.val_dataset)) == (15, 5)
    test_images, test_labels = module.test_dataset.tensors
    np.testing.assert_allclose(test_images.numpy()[:, 0], arrays["t10k-images-idx3-ubyte"] / 255)
    np.testing.assert_array_equal(test_labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert test_labels.dtype == torch.int64
    # train and val together are the training file, each image keeping its own label
    expected = dict(
        zip(
            (image.tobytes() for image in arrays["train-images-idx3-ubyte"]),
            arrays["train-labels-idx1-ubyte"].tolist(),
            strict=True,
        )
    )
    found = {}
    for dataset in (module.train_dataset, module.val_dataset):
        for image, label in dataset:
            pixels = torch.round(image[0] * 255).to(torch.uint8).numpy()
            found[pixels.tobytes()] = label.item()
    assert found == expected


@pytest.mark.parametrize("layout", ["Name/raw", "Name", "."])
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("cls", [MNISTDataModule, FashionMNISTDataModule])
def test_lookup_order_and_compression(tmp_path, idx_writer, cls, layout, compress):
    folder = tmp_path / layout.replace("Name", cls.dataset_name)
    for name, array in _arrays().items():
        idx_writer(folder / name, array, compress=compress)
    module = cls(tmp_path, normalize=False)
    assert module.find_dir() == folder.absolute()
    module.setup("test")
    x, y = next(iter(module.test_dataloader()))
    assert x.shape == (6, *module.input_shape)
    np.testing.assert_array_equal(y.numpy(), _arrays()["t10k-labels-idx1-ubyte"])


def test_data_dir_expands_home(tmp_path, monkeypatch, mnist_dir):
    monkeypatch.setenv("HOME", str(tmp_path))
    module = MNISTDataModule("~", normalize=False)
    assert module.data_dir == tmp_path


@pytest.mark.parametrize("cls", [MNISTDataModule, FashionMNISTDataModule])
def test_missing_files_name_paths_and_files(tmp_path, cls):
    name = cls.dataset_name
    searched = f"{tmp_path}/{name}/raw, {tmp_path}/{name}, {tmp_path}"
    expected = ", ".join(f"{file}[.gz]" for file in FILES)
    message = (
        f"data.data_dir: no {name} files in {searched}; expected {expected}; "
        "set data.download=true to fetch them"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        cls(str(tmp_path))


def test_partial_set_names_the_missing_file(tmp_path, idx_writer):
    for name, array in _arrays().items():
        if name != "t10k-labels-idx1-ubyte":
            idx_writer(tmp_path / "MNIST" / name, array)
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path}/MNIST lacks t10k-labels")):
        MNISTDataModule(tmp_path)


def test_download_without_torchvision_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ConfigError, match=r"data\.download: .*pip install lsuite\[vision\]"):
        MNISTDataModule(tmp_path, download=True)


def test_download_only_when_asked_and_files_missing(tmp_path, monkeypatch, idx_writer):
    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            for name, array in _arrays().items():
                idx_writer(f"{root}/MNIST/raw/{name}", array, compress=True)

    fake = types.ModuleType("torchvision")
    fake.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
    fake.datasets = types.ModuleType("torchvision.datasets")
    fake.datasets.MNIST = FakeMNIST
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)

    module = MNISTDataModule(tmp_path, download=True, normalize=False)
    with pytest.raises(ConfigError, match="download=true, so prepare_data"):
        module.setup("fit")  # setup never downloads (it runs on every rank)
    module.prepare_data()
    assert calls == [(str(tmp_path), True, True)]
    module.prepare_data()  # files present now: no second download
    assert len(calls) == 1
    module.setup("fit")
    assert len(module.test_dataset) == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data_dir": ""}, "data.data_dir: got ''; expected a directory path"),
        ({"data_dir": None}, "data.data_dir: got None"),
        ({"download": "no"}, "data.download: got 'no'; expected true or false"),
        ({"batch_size": 0}, "data.batch_size: got 0; expected an int >= 1"),
    ],
    ids=["empty-dir", "none-dir", "download", "batch_size"],
)
def test_bad_arguments(mnist_dir, kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        MNISTDataModule(**{"data_dir": mnist_dir[0], **kwargs})


def _arrays():
    rng = np.random.default_rng(1)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (8, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(8, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([9, 8, 7, 0, 1, 2], dtype=np.uint8),
    }
