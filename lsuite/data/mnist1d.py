"""Data module for MNIST-1D, generated offline by the ``mnist1d`` package."""

from __future__ import annotations

import functools
import os
import random
from pathlib import Path

import numpy as np
from typing_extensions import override

from lsuite.data._checks import check_path
from lsuite.data.tensor_datamodule import RawArrays, TensorDataModule

#: Name of the cached arrays under ``data_dir``.
CACHE_NAME = "mnist1d.npz"
_KEYS = ("x", "y", "x_test", "y_test")


@functools.lru_cache(maxsize=1)
def _generate() -> dict[str, np.ndarray]:
    """Build the default MNIST-1D arrays, leaving the global ``random``/numpy RNGs untouched.

    Returns:
        ``x`` ``(4000, 40)``, ``y`` ``(4000,)``, ``x_test`` ``(1000, 40)``, ``y_test`` ``(1000,)``.
    """
    from mnist1d.data import get_dataset_args, make_dataset  # slow import, needed only here

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        # make_dataset reseeds the global RNGs with its own fixed seed (42).
        dataset = make_dataset(get_dataset_args())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    arrays = {key: np.array(dataset[key]) for key in _KEYS}
    for array in arrays.values():
        array.flags.writeable = False  # shared by every instance
    return arrays


def _read_cache(path: Path) -> dict[str, np.ndarray]:
    """Read the cached arrays.

    Returns:
        The arrays under the keys ``x``, ``y``, ``x_test`` and ``y_test``.

    Raises:
        ValueError: when an array is missing from the file.
    """
    with np.load(path) as file:
        missing = [key for key in _KEYS if key not in file]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}; delete the file to rebuild it")
        return {key: file[key] for key in _KEYS}


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays to ``path`` through a temporary file, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as file:
        np.savez(file, **arrays)
    os.replace(temporary, path)


class MNIST1DDataModule(TensorDataModule):
    """Serve MNIST-1D: 4,000 training and 1,000 test ``(1, 40)`` signals in 10 classes.

    Greydanus, 2020, "Scaling down deep learning" (MNIST-1D). The arrays come from
    ``mnist1d.data.make_dataset`` with its default arguments (about 2 s, no download).

    Args:
        data_dir: folder where the arrays are cached as ``mnist1d.npz`` (written by
            `prepare_data`, read by later runs); None generates them in every process.
            ``~`` is expanded and a relative path is taken from the working directory.
        batch_size: training batch size.
        num_workers: DataLoader worker processes.
        val_fraction: share of the 4,000 training signals held out for validation.
        split_seed: seed of the train/val split (independent of the training seed).
        normalize: standardise with the train split's mean and std.
        eval_batch_size: validation/test batch size; None uses ``batch_size``.
        pin_memory: pin batches in page-locked memory.

    Raises:
        ConfigError: when an argument is out of range; the message names the ``data.`` key.
    """

    input_shape = (1, 40)
    num_classes = 10

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
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
        self.data_dir = None if data_dir is None else check_path("data_dir", data_dir)

    @property
    def cache_path(self) -> Path | None:
        """``data_dir / "mnist1d.npz"``, or None without ``data_dir``."""
        return None if self.data_dir is None else self.data_dir / CACHE_NAME

    @override
    def prepare_data(self) -> None:
        """Generate the arrays and cache them under ``data_dir`` unless already there."""
        if self.cache_path is not None and not self.cache_path.is_file():
            _write_cache(self.cache_path, _generate())

    @override
    def load_arrays(self) -> RawArrays:
        """Return the signals ``(N, 1, 40)`` and labels, from the cache when there is one."""
        path = self.cache_path
        arrays = _read_cache(path) if path is not None and path.is_file() else _generate()
        return RawArrays(
            inputs=arrays["x"][:, None],
            targets=arrays["y"].astype(np.int64),
            test_inputs=arrays["x_test"][:, None],
            test_targets=arrays["y_test"].astype(np.int64),
        )
