"""MNIST and Fashion-MNIST data modules reading the standard IDX files."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from typing_extensions import override

from lsuite.data.file_datamodule import FileDataModule
from lsuite.data.idx import read_idx
from lsuite.data.tensor_datamodule import RawArrays

_TRAIN_IMAGES = "train-images-idx3-ubyte"
_TRAIN_LABELS = "train-labels-idx1-ubyte"
_TEST_IMAGES = "t10k-images-idx3-ubyte"
_TEST_LABELS = "t10k-labels-idx1-ubyte"


class _IdxDataModule(FileDataModule):
    """Serve 28x28 grey-scale images in 10 classes from the four IDX files.

    The files (each plain or ``.gz``) are looked up in ``data_dir/<dataset_name>/raw``
    (where torchvision downloads them), then ``data_dir/<dataset_name>``, then ``data_dir``.
    Pixels are scaled from 0..255 to [0, 1] before normalisation. Arguments are those of
    `FileDataModule`.
    """

    input_shape = (1, 28, 28)
    num_classes = 10
    expected_files = (_TRAIN_IMAGES, _TRAIN_LABELS, _TEST_IMAGES, _TEST_LABELS)
    compressed = True

    @override
    def search_dirs(self) -> list[Path]:
        """Return ``data_dir/<Name>/raw``, ``data_dir/<Name>`` and ``data_dir``."""
        named = self.data_dir / self.dataset_name
        return [named / "raw", named, self.data_dir]

    @override
    def download_files(self, datasets: ModuleType) -> None:
        """Download all four files into ``data_dir/<Name>/raw`` with torchvision."""
        getattr(datasets, self.dataset_name)(root=str(self.data_dir), train=True, download=True)

    @override
    def read_arrays(self, directory: Path) -> RawArrays:
        """Read the train and test images and labels.

        Args:
            directory: folder holding the four IDX files.

        Returns:
            ``(N, 1, 28, 28)`` uint8 images and ``(N,)`` labels, for both train and test.

        Raises:
            ValueError: when a file is malformed or images and labels differ in number.
        """
        arrays = [read_idx(self.file(directory, name)) for name in self.expected_files]
        train_images, train_labels, test_images, test_labels = arrays
        for images, labels in [(train_images, train_labels), (test_images, test_labels)]:
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise ValueError(
                    f"{self.dataset_name} files in {directory}: images {images.shape} and "
                    f"labels {labels.shape}; expected (N, 28, 28) and (N,)"
                )
        return RawArrays(
            inputs=train_images[:, None],
            targets=train_labels.astype("int64"),
            test_inputs=test_images[:, None],
            test_targets=test_labels.astype("int64"),
            scale=1 / 255,
        )


class MNISTDataModule(_IdxDataModule):
    """Serve MNIST: 60,000 training and 10,000 test handwritten digits, ``(1, 28, 28)``.

    Args:
        data_dir: folder holding ``MNIST/raw/`` (torchvision's layout), ``MNIST/`` or the files
            themselves; ``~`` is expanded and a relative path is taken from the working directory.
        download: fetch the files with torchvision (``pip install lsuite[vision]``) when missing.
        batch_size: training batch size.
        num_workers: DataLoader worker processes.
        val_fraction: share of the 60,000 training images held out for validation.
        split_seed: seed of the train/val split (independent of the training seed).
        normalize: standardise with the train split's mean and std.
        eval_batch_size: validation/test batch size; None uses ``batch_size``.
        pin_memory: pin batches in page-locked memory.
    """

    dataset_name = "MNIST"


class FashionMNISTDataModule(_IdxDataModule):
    """Serve Fashion-MNIST: 60,000 training and 10,000 test clothing images, ``(1, 28, 28)``.

    Args:
        data_dir: folder holding ``FashionMNIST/raw/`` (torchvision's layout), ``FashionMNIST/``
            or the files themselves; ``~`` is expanded and a relative path is taken from the
            working directory.
        download: fetch the files with torchvision (``pip install lsuite[vision]``) when missing.
        batch_size: training batch size.
        num_workers: DataLoader worker processes.
        val_fraction: share of the 60,000 training images held out for validation.
        split_seed: seed of the train/val split (independent of the training seed).
        normalize: standardise with the train split's mean and std.
        eval_batch_size: validation/test batch size; None uses ``batch_size``.
        pin_memory: pin batches in page-locked memory.
    """

    dataset_name = "FashionMNIST"
