"""Lightning data modules, one per dataset, holding their splits in memory."""

from lsuite.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from lsuite.data.digits import DigitsDataModule
from lsuite.data.file_datamodule import FileDataModule
from lsuite.data.mnist import FashionMNISTDataModule, MNISTDataModule
from lsuite.data.mnist1d import MNIST1DDataModule
from lsuite.data.tensor_datamodule import RawArrays, TensorDataModule

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "FileDataModule",
    "MNIST1DDataModule",
    "MNISTDataModule",
    "RawArrays",
    "TensorDataModule",
]
