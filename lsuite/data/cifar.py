"""CIFAR-10 and CIFAR-100 data modules reading the python pickle batches."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from typing_extensions import override

from lsuite.data._checks import check_bool
from lsuite.data.augment import random_crop_flip
from lsuite.data.file_datamodule import FileDataModule
from lsuite.data.tensor_datamodule import RawArrays

_PIXELS = 3 * 32 * 32


def read_cifar_batch(
    path: str | os.PathLike[str], label_key: bytes = b"labels"
) -> tuple[np.ndarray, np.ndarray]:
    """Read one pickled CIFAR batch file (``data_batch_1``, ``test_batch``, ``train``, ...).

    Each file holds a dict with ``b"data"``, a ``(N, 3072)`` uint8 array of rows laid out as
    1024 red, 1024 green, then 1024 blue values (each 32x32 in row-major order), and the labels
    under ``label_key``. Unpickling runs code from the file: read only trusted files.

    Args:
        path: the batch file.
        label_key: ``b"labels"`` for CIFAR-10, ``b"fine_labels"`` for CIFAR-100's 100 classes.

    Returns:
        ``(images, labels)``: ``(N, 3, 32, 32)`` uint8 and ``(N,)`` int64.

    Raises:
        ValueError: when a key is missing or the data are not ``(N, 3072)`` with N labels.
    """
    with open(path, "rb") as file:
        entry = pickle.load(file, encoding="bytes")
    data, labels = (_lookup(entry, key, path) for key in (b"data", label_key))
    data = np.asarray(data, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != _PIXELS or labels.shape != data.shape[:1]:
        raise ValueError(
            f"{path}: data {data.shape} and labels {labels.shape}; expected (N, {_PIXELS}) and (N,)"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _lookup(entry: object, key: bytes, path: str | os.PathLike[str]) -> object:
    """Return ``entry[key]``, accepting a str key for files pickled by Python 3.

    Raises:
        ValueError: when ``entry`` is not a dict holding ``key``.
    """
    if isinstance(entry, dict):
        for candidate in (key, key.decode()):
            if candidate in entry:
                return entry[candidate]
    raise ValueError(f"{path}: no {key!r} entry in the pickled batch")


class _CifarDataModule(FileDataModule):
    """Serve 32x32 colour images from CIFAR pickle batches, augmented while training.

    The batches are looked up in ``data_dir/<folder>`` (where torchvision extracts them), then
    in ``data_dir``. Pixels are scaled from 0..255 to [0, 1] before normalisation.

    Args:
        data_dir: see `FileDataModule`.
        download: see `FileDataModule`.
        augment: randomly crop (32 from a 4-pixel black border) and flip training batches
            after they reach the device; the datasets themselves stay deterministic.
        batch_size: see `TensorDataModule`.
        num_workers: see `TensorDataModule`.
        val_fraction: see `TensorDataModule`.
        split_seed: see `TensorDataModule`.
        normalize: see `TensorDataModule`.
        eval_batch_size: see `TensorDataModule`.
        pin_memory: see `TensorDataModule`.

    Raises:
        ConfigError: when an argument is invalid or the files are missing (see `FileDataModule`).
    """

    input_shape = (3, 32, 32)
    #: Folder torchvision extracts the batches into.
    folder: ClassVar[str]
    train_files: ClassVar[tuple[str, ...]]
    test_files: ClassVar[tuple[str, ...]]
    label_key: ClassVar[bytes]

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        download: bool = False,
        augment: bool = True,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        normalize: bool = True,
        eval_batch_size: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        check_bool("augment", augment)
        self.augment = augment
        super().__init__(
            data_dir,
            download=download,
            batch_size=batch_size,
            num_workers=num_workers,
            val_fraction=val_fraction,
            split_seed=split_seed,
            normalize=normalize,
            eval_batch_size=eval_batch_size,
            pin_memory=pin_memory,
        )

    @override
    def search_dirs(self) -> list[Path]:
        """Return ``data_dir/<folder>`` and ``data_dir``."""
        return [self.data_dir / self.folder, self.data_dir]

    @override
    def download_files(self, datasets: ModuleType) -> None:
        """Download and extract the archive into ``data_dir/<folder>`` with torchvision."""
        getattr(datasets, self.dataset_name)(root=str(self.data_dir), train=True, download=True)

    @override
    def read_arrays(self, directory: Path) -> RawArrays:
        """Read the train and test batches.

        Args:
            directory: folder holding the batch files.

        Returns:
            ``(N, 3, 32, 32)`` uint8 images and ``(N,)`` labels, for both train and test.
        """
        inputs, targets = self._read_batches(directory, self.train_files)
        test_inputs, test_targets = self._read_batches(directory, self.test_files)
        return RawArrays(inputs, targets, test_inputs, test_targets, scale=1 / 255)

    def _read_batches(
        self, directory: Path, names: tuple[str, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Read and concatenate batch files.

        Returns:
            ``(N, 3, 32, 32)`` uint8 images and ``(N,)`` int64 labels.
        """
        batches = [read_cifar_batch(self.file(directory, name), self.label_key) for name in names]
        images, labels = zip(*batches, strict=True)
        return np.concatenate(images), np.concatenate(labels)

    @property
    def black(self) -> Tensor:
        """``(C,)`` value of a black pixel as the model sees it (after normalisation)."""
        if self.mean is None or self.std is None:
            return torch.zeros(self.input_shape[0])
        return -self.mean / self.std

    @override
    def on_after_batch_transfer(self, batch: list[Tensor], dataloader_idx: int) -> list[Tensor]:
        """Augment training batches (with ``augment``) on their device; pass others through.

        Args:
            batch: ``[inputs, targets]`` with inputs ``(B, 3, 32, 32)``.
            dataloader_idx: index of the loader the batch came from.

        Returns:
            ``[inputs, targets]``, inputs randomly cropped and flipped while training.
        """
        if not (self.augment and self.trainer is not None and self.trainer.training):
            return batch
        inputs, targets = batch
        fill = self.black.to(device=inputs.device, dtype=inputs.dtype)
        return [random_crop_flip(inputs, padding=4, fill=fill), targets]


class CIFAR10DataModule(_CifarDataModule):
    """Serve CIFAR-10: 50,000 training and 10,000 test colour images, ``(3, 32, 32)``, 10 classes.

    Reads ``data_dir/cifar-10-batches-py/{data_batch_1..5,test_batch}`` (torchvision's layout),
    or the same files directly in ``data_dir``.

    Args:
        data_dir: folder holding ``cifar-10-batches-py/``; ``~`` is expanded and a relative path
            is taken from the working directory.
        download: fetch the files with torchvision (``pip install lsuite[vision]``) when missing.
        augment: randomly crop (32 from a 4-pixel black border) and flip training batches.
        batch_size: training batch size.
        num_workers: DataLoader worker processes.
        val_fraction: share of the 50,000 training images held out for validation.
        split_seed: seed of the train/val split (independent of the training seed).
        normalize: standardise each channel with the train split's mean and std.
        eval_batch_size: validation/test batch size; None uses ``batch_size``.
        pin_memory: pin batches in page-locked memory.
    """

    dataset_name = "CIFAR10"
    num_classes = 10
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    expected_files = (*train_files, *test_files)
    label_key = b"labels"


class CIFAR100DataModule(_CifarDataModule):
    """Serve CIFAR-100: 50,000 training and 10,000 test colour images in 100 (fine) classes.

    Reads ``data_dir/cifar-100-python/{train,test}`` (torchvision's layout), or the same files
    directly in ``data_dir``, with the ``fine_labels``. Takes the arguments of `CIFAR10DataModule`
    (``data_dir`` holding ``cifar-100-python/``).
    """

    dataset_name = "CIFAR100"
    num_classes = 100
    folder = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    expected_files = (*train_files, *test_files)
    label_key = b"fine_labels"
