"""Tiny dataset files in the real on-disk formats, written into tmp_path."""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def write_idx(path, array, compress=False):
    """Write ``array`` as an IDX file (big-endian), gzipped when ``compress``."""
    array = np.asarray(array)
    header = bytes([0, 0, IDX_CODES[array.dtype.type], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def mnist_arrays(num_train=20, num_test=6, seed=0):
    """Random uint8 images ``(N, 28, 28)`` and labels ``(N,)`` for train and test."""
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(num_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (num_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(num_test, dtype=np.uint8) * 3) % 10,
    }


def write_cifar_batch(path, images, labels, label_key=b"labels", extra=None):
    """Pickle a CIFAR batch: ``b"data"`` uint8 ``(N, 3072)`` (R, G, B planes) and labels."""
    entry = {b"batch_label": b"test", b"data": images.reshape(len(images), -1)}
    entry[label_key] = [int(label) for label in labels]
    entry.update(extra or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        pickle.dump(entry, file)
    return path


def cifar_images(count, seed):
    return np.random.default_rng(seed).integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)


@pytest.fixture
def mnist_dir(tmp_path):
    """Gzipped MNIST files in torchvision's ``MNIST/raw``; returns (data_dir, arrays)."""
    arrays = mnist_arrays()
    for name, array in arrays.items():
        write_idx(tmp_path / "MNIST" / "raw" / name, array, compress=True)
    return tmp_path, arrays


@pytest.fixture
def cifar10_dir(tmp_path):
    """5 train batches of 4 images, a test batch of 3; returns (data_dir, arrays)."""
    folder = tmp_path / "cifar-10-batches-py"
    train = [(cifar_images(4, i), np.arange(4) + i) for i in range(5)]
    for name, (images, labels) in zip(CIFAR10_TRAIN, train, strict=True):
        write_cifar_batch(folder / name, images, labels)
    test = (cifar_images(3, 99), np.array([9, 0, 1]))
    write_cifar_batch(folder / "test_batch", *test)
    images = np.concatenate([x for x, _ in train])
    labels = np.concatenate([y for _, y in train])
    return tmp_path, {"train": (images, labels), "test": test}


@pytest.fixture
def cifar100_dir(tmp_path):
    """``data_dir`` with CIFAR-100 ``train`` (30 images) and ``test`` (5); returns (dir, arrays)."""
    folder = tmp_path / "cifar-100-python"
    arrays = {}
    for name, count in [("train", 30), ("test", 5)]:
        images, fine = cifar_images(count, count), (np.arange(count) * 7) % 100
        extra = {b"coarse_labels": [int(label) for label in fine // 5]}
        write_cifar_batch(folder / name, images, fine, label_key=b"fine_labels", extra=extra)
        arrays[name] = (images, fine)
    return tmp_path, arrays


@pytest.fixture
def idx_writer():
    """The `write_idx` helper (fixtures keep test modules from importing conftest)."""
    return write_idx


@pytest.fixture
def cifar_writer():
    """The `write_cifar_batch` helper."""
    return write_cifar_batch
