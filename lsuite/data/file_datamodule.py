"""Find a dataset's files under ``data_dir``, fetching them with torchvision only on request."""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import ClassVar

from typing_extensions import override

from lsuite.data._checks import PREFIX, check_bool, check_path
from lsuite.data.tensor_datamodule import RawArrays, TensorDataModule
from lsuite.errors import ConfigError


def find_file(directory: Path, name: str, *, compressed: bool) -> Path | None:
    """Return ``directory / name``, else (when ``compressed``) ``directory / (name + ".gz")``.

    Args:
        directory: folder to look in.
        name: file name without ``.gz``.
        compressed: whether a gzipped copy also counts.

    Returns:
        The first of the two that is a file, or None.
    """
    candidates = [name, name + ".gz"] if compressed else [name]
    for candidate in candidates:
        path = directory / candidate
        if path.is_file():
            return path
    return None


def import_torchvision_datasets() -> ModuleType:
    """Import ``torchvision.datasets``, which only downloads need.

    Returns:
        The ``torchvision.datasets`` module.

    Raises:
        ConfigError: when torchvision is not installed.
    """
    try:
        return importlib.import_module("torchvision.datasets")
    except ImportError as error:
        raise ConfigError(_no_torchvision_message()) from error


def _no_torchvision_message() -> str:
    return (
        f"{PREFIX}download: got True; expected torchvision to be installed to download "
        "(pip install lsuite[vision])"
    )


class FileDataModule(TensorDataModule):
    """Serve a dataset read from files under ``data_dir``, in torchvision's folder layout.

    Subclasses name the dataset (``dataset_name``), the files they need (``expected_files``,
    optionally gzipped when ``compressed``), the folders searched (`search_dirs`), how to
    fetch the files (`download_files`) and how to read them (`read_arrays`). Files are looked
    for in `__init__`, so a wrong ``data_dir`` fails before any training.

    Args:
        data_dir: folder holding the dataset (``~`` is expanded; a relative path is taken from
            the current working directory).
        download: when the files are missing, fetch them with torchvision in `prepare_data`.
            Never downloads otherwise.
        batch_size: see `TensorDataModule`.
        num_workers: see `TensorDataModule`.
        val_fraction: see `TensorDataModule`.
        split_seed: see `TensorDataModule`.
        normalize: see `TensorDataModule`.
        eval_batch_size: see `TensorDataModule`.
        pin_memory: see `TensorDataModule`.

    Raises:
        ConfigError: when an argument is invalid, when the files are missing and ``download`` is
            false, or when a download is needed and torchvision is not installed.
    """

    #: Name used in messages and as torchvision's folder/class name, e.g. ``"MNIST"``.
    dataset_name: ClassVar[str]
    #: Files that must all be present in one searched folder.
    expected_files: ClassVar[tuple[str, ...]]
    #: Whether ``<file>.gz`` may stand in for each expected file.
    compressed: ClassVar[bool] = False

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        normalize: bool = True,
        eval_batch_size: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            val_fraction=val_fraction,
            split_seed=split_seed,
            normalize=normalize,
            eval_batch_size=eval_batch_size,
            pin_memory=pin_memory,
        )
        self.data_dir = check_path("data_dir", data_dir)
        check_bool("download", download)
        self.download = download
        if self.find_dir() is None:
            if not download:
                raise ConfigError(self._missing_message())
            if importlib.util.find_spec("torchvision") is None:
                raise ConfigError(_no_torchvision_message())

    def search_dirs(self) -> list[Path]:
        """Return the folders searched for the files, in order of preference.

        Returns:
            Absolute folder paths under ``data_dir``.

        Raises:
            NotImplementedError: always; subclasses implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement search_dirs()")

    def download_files(self, datasets: ModuleType) -> None:
        """Fetch the files into ``data_dir`` with torchvision.

        Args:
            datasets: the ``torchvision.datasets`` module.

        Raises:
            NotImplementedError: always; subclasses implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement download_files()")

    def read_arrays(self, directory: Path) -> RawArrays:
        """Read the dataset from the folder that holds every expected file.

        Args:
            directory: the first of `search_dirs` holding all ``expected_files``.

        Returns:
            The raw arrays, with the official test set.

        Raises:
            NotImplementedError: always; subclasses implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement read_arrays()")

    def find_dir(self) -> Path | None:
        """Return the first searched folder that holds every expected file, or None.

        Returns:
            The folder, or None when no folder has the complete set.
        """
        for directory in self.search_dirs():
            if all(self._find(directory, name) for name in self.expected_files):
                return directory
        return None

    def file(self, directory: Path, name: str) -> Path:
        """Return the path of expected file ``name`` in ``directory`` (plain or ``.gz``).

        Args:
            directory: a folder returned by `find_dir`.
            name: one of ``expected_files``.

        Returns:
            The existing file's path.

        Raises:
            ConfigError: when the file is missing.
        """
        path = self._find(directory, name)
        if path is None:
            raise ConfigError(self._missing_message())
        return path

    @override
    def prepare_data(self) -> None:
        """Download the files when they are missing and ``download`` is true (rank zero only)."""
        if self.download and self.find_dir() is None:
            self.download_files(import_torchvision_datasets())

    @override
    def load_arrays(self) -> RawArrays:
        """Read the arrays from the folder found by `find_dir`.

        Returns:
            The raw arrays, with the official test set.

        Raises:
            ConfigError: when the files are (still) missing.
        """
        directory = self.find_dir()
        if directory is None:
            raise ConfigError(self._missing_message())
        return self.read_arrays(directory)

    def _find(self, directory: Path, name: str) -> Path | None:
        return find_file(directory, name, compressed=self.compressed)

    def _missing_message(self) -> str:
        """Describe the missing files.

        Returns:
            A message naming the folders searched, the files expected and what to do.
        """
        suffix = "[.gz]" if self.compressed else ""
        searched = ", ".join(str(directory) for directory in self.search_dirs())
        expected = ", ".join(name + suffix for name in self.expected_files)
        message = (
            f"{PREFIX}data_dir: no {self.dataset_name} files in {searched}; expected {expected}"
        )
        for directory in self.search_dirs():
            missing = [n + suffix for n in self.expected_files if not self._find(directory, n)]
            if len(missing) < len(self.expected_files):
                message += f"; {directory} lacks {', '.join(missing)}"
        if self.download:
            return message + f"; {PREFIX}download=true, so prepare_data() should fetch them"
        return message + f"; set {PREFIX}download=true to fetch them"
