"""Data module for scikit-learn's 8x8 handwritten digits, bundled with scikit-learn (offline)."""

from __future__ import annotations

import functools

import numpy as np
from typing_extensions import override

from lsuite.data._checks import check_fraction
from lsuite.data.tensor_datamodule import RawArrays, TensorDataModule


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Return the ``(1797, 8, 8)`` float32 images (values 0..16) and ``(1797,)`` int64 labels."""
    from sklearn.datasets import load_digits  # slow import, needed only here

    bunch = load_digits()
    images = bunch.images.astype(np.float32)
    labels = bunch.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False  # shared by every instance
    return images, labels


class DigitsDataModule(TensorDataModule):
    """Serve scikit-learn's digits: 1,797 grey-scale ``(1, 8, 8)`` images in 10 classes.

    The dataset has no official test set, so `setup` first holds out ``test_fraction`` of the
    images as the test split, then ``val_fraction`` of the rest for validation, both drawn with
    ``split_seed``. Pixels are scaled from 0..16 to [0, 1] before normalisation.

    Args:
        batch_size: training batch size.
        num_workers: DataLoader worker processes.
        val_fraction: share of the non-test images held out for validation, in ``[0, 1)``.
        test_fraction: share of all images held out for testing, in ``(0, 1)``.
        split_seed: seed of the test and validation splits (independent of the training seed).
        normalize: standardise with the train split's mean and std.
        eval_batch_size: validation/test batch size; None uses ``batch_size``.
        pin_memory: pin batches in page-locked memory.

    Raises:
        ConfigError: when an argument is out of range; the message names the ``data.`` key.
    """

    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(
        self,
        *,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
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
        check_fraction("test_fraction", test_fraction, allow_zero=False)
        self.test_fraction = test_fraction

    @override
    def load_arrays(self) -> RawArrays:
        """Return all 1,797 images ``(N, 1, 8, 8)`` and labels ``(N,)``, without a test set."""
        images, labels = _load_digits()
        return RawArrays(inputs=images[:, None], targets=labels, scale=1 / 16)
