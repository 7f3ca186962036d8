import random

import numpy as np
import pytest
import torch

from lsuite.data import mnist1d
from lsuite.data.mnist1d import MNIST1DDataModule


def test_batches_and_splits():
    module = MNIST1DDataModule(batch_size=50)
    assert (module.input_shape, module.num_classes) == ((1, 40), 10)
    module.setup("fit")
    sizes = [len(module.train_dataset), len(module.val_dataset), len(module.test_dataset)]
    assert sizes == [3600, 400, 1000]
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (50, 1, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
    train = module.train_dataset.tensors[0]
    assert abs(train.mean().item()) < 1e-5 and abs(train.std(correction=0).item() - 1) < 1e-4


def test_generation_leaves_global_rngs_alone(monkeypatch):
    def reseeding_make_dataset(args):  # like mnist1d's, which reseeds both global RNGs
        random.seed(args.seed)
        np.random.seed(args.seed)
        return {key: np.zeros(1) for key in ("x", "y", "x_test", "y_test")}

    monkeypatch.setattr("mnist1d.data.make_dataset", reseeding_make_dataset)
    random.seed(5)
    np.random.seed(5)
    expected = random.random(), np.random.rand()
    random.seed(5)
    np.random.seed(5)
    mnist1d._generate.__wrapped__()  # bypass the in-memory cache
    assert (random.random(), np.random.rand()) == expected


def test_cache_written_by_prepare_data_and_read_back(tmp_path, monkeypatch):
    module = MNIST1DDataModule(tmp_path / "cache", normalize=False)
    module.prepare_data()
    assert (tmp_path / "cache" / "mnist1d.npz").is_file()
    assert list((tmp_path / "cache").iterdir()) == [tmp_path / "cache" / "mnist1d.npz"]
    module.setup("fit")

    def fail():
        raise AssertionError("regenerated despite the cache")

    monkeypatch.setattr(mnist1d, "_generate", fail)
    cached = MNIST1DDataModule(str(tmp_path / "cache"), normalize=False)
    cached.prepare_data()
    cached.setup("fit")
    for a, b in zip(module.test_dataset.tensors, cached.test_dataset.tensors, strict=True):
        assert torch.equal(a, b)


def test_broken_cache_is_reported(tmp_path):
    np.savez(tmp_path / "mnist1d.npz", x=np.zeros((2, 40)))
    with pytest.raises(ValueError, match="missing arrays"):
        MNIST1DDataModule(tmp_path).setup("fit")
