"""Hold a dataset's train/val/test splits in memory as tensors and serve their loaders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset
from typing_extensions import override

from lsuite.data._checks import check_bool, check_fraction, check_int

#: Floor for a channel's standard deviation, so a constant channel normalises to zeros.
_MIN_STD = 1e-12


@dataclass(frozen=True)
class RawArrays:
    """A dataset as stored, before splitting, scaling and normalisation.

    Attributes:
        inputs: ``(N, *input_shape)`` samples, any real dtype (uint8 for images).
        targets: ``(N,)`` integer class labels in ``[0, num_classes)``.
        test_inputs: ``(M, *input_shape)`` official test samples, or None when the dataset
            has none (a test split is then drawn from ``inputs`` with the module's ``split_seed``).
        test_targets: ``(M,)`` labels of ``test_inputs``, or None.
        scale: factor mapping stored values to floats, e.g. ``1 / 255`` for uint8 pixels.
    """

    inputs: np.ndarray
    targets: np.ndarray
    test_inputs: np.ndarray | None = None
    test_targets: np.ndarray | None = None
    scale: float = 1.0


def split_indices(
    num_samples: int, fraction: float, generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(num_samples)`` at random into a kept and a held-out part.

    Args:
        num_samples: number of samples ``N``.
        fraction: share of the samples held out; the held-out size is ``round(fraction * N)``.
        generator: source of the random permutation (its state advances).

    Returns:
        ``(kept, held_out)``: sorted int64 index arrays of shapes ``(N - K,)`` and ``(K,)``.
    """
    permutation = torch.randperm(num_samples, generator=generator).numpy()
    num_held_out = round(fraction * num_samples)
    return np.sort(permutation[num_held_out:]), np.sort(permutation[:num_held_out])


class TensorDataModule(LightningDataModule):
    """Serve a classification dataset held in memory as train/val/test `TensorDataset` splits.

    Subclasses set ``input_shape`` and ``num_classes`` and implement `load_arrays`. `setup` then
    draws the validation split (and, for datasets without an official test set, the test split
    first) from a generator seeded with ``split_seed``, so the same seed gives the same splits,
    whatever the training seed. Inputs become float32, scaled by `RawArrays.scale` and, with
    ``normalize``, shifted and divided per channel by the mean and standard deviation of the
    train split. Each dataset yields
    ``(input, target)`` pairs of shapes ``input_shape`` and ``()`` (int64).

    Args:
        batch_size: training batch size.
        num_workers: DataLoader worker processes; workers persist across epochs when > 0.
        val_fraction: share of the training data held out for validation, in ``[0, 1)``;
            0 gives an empty validation set.
        split_seed: seed of the train/val split (and of the test split, when one is drawn);
            independent of the training seed, so runs with different seeds share a validation set.
        normalize: standardise each channel with the train split's mean and std.
        eval_batch_size: batch size of the validation and test loaders; None uses ``batch_size``.
        pin_memory: pin batches in page-locked memory (faster copies to a GPU).

    Raises:
        ConfigError: when an argument is out of range; the message names the ``data.`` key.
    """

    #: Shape of one input sample, without the batch dimension, e.g. ``(1, 8, 8)``.
    input_shape: ClassVar[tuple[int, ...]]
    #: Number of classes; targets lie in ``[0, num_classes)``.
    num_classes: ClassVar[int]
    #: Held-out test share for datasets without an official test set (set by such subclasses).
    test_fraction: float | None = None

    def __init__(
        self,
        *,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        normalize: bool = True,
        eval_batch_size: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        check_int("batch_size", batch_size, 1)
        check_int("num_workers", num_workers, 0)
        check_fraction("val_fraction", val_fraction, allow_zero=True)
        check_int("split_seed", split_seed, 0)
        check_bool("normalize", normalize)
        if eval_batch_size is not None:
            check_int("eval_batch_size", eval_batch_size, 1)
        check_bool("pin_memory", pin_memory)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.normalize = normalize
        self.eval_batch_size = eval_batch_size
        self.pin_memory = pin_memory
        self._splits: dict[str, TensorDataset] | None = None
        self._mean: Tensor | None = None
        self._std: Tensor | None = None

    def load_arrays(self) -> RawArrays:
        """Load the whole dataset as stored; called once, by the first `setup`.

        Returns:
            The raw arrays; ``inputs`` has shape ``(N, *input_shape)``.

        Raises:
            NotImplementedError: always; subclasses implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement load_arrays()")

    @override
    def setup(self, stage: str) -> None:
        """Load the arrays and build every split; later calls reuse them.

        Args:
            stage: ``"fit"``, ``"validate"``, ``"test"`` or ``"predict"``; all splits are built
                whatever the stage, since they come from the same arrays.

        Raises:
            TypeError: when the dataset has no test set and the subclass sets no test_fraction.
        """
        if self._splits is not None:
            return
        arrays = self.load_arrays()
        self._check(arrays)
        generator = torch.Generator().manual_seed(self.split_seed)
        inputs, targets = arrays.inputs, arrays.targets
        if arrays.test_inputs is None or arrays.test_targets is None:
            if self.test_fraction is None:
                raise TypeError(f"{type(self).__name__} has no test set and no test_fraction")
            kept, held_out = split_indices(len(targets), self.test_fraction, generator)
            test_inputs, test_targets = inputs[held_out], targets[held_out]
            inputs, targets = inputs[kept], targets[kept]
        else:
            test_inputs, test_targets = arrays.test_inputs, arrays.test_targets
        train, val = split_indices(len(targets), self.val_fraction, generator)
        raw = {
            "train": (inputs[train], targets[train]),
            "val": (inputs[val], targets[val]),
            "test": (test_inputs, test_targets),
        }
        tensors = {name: _to_float(x, arrays.scale) for name, (x, _) in raw.items()}
        if self.normalize:
            self._std, self._mean = _channel_std_mean(tensors["train"])
            for x in tensors.values():
                _standardize_(x, self._mean, self._std)
        self._splits = {
            name: TensorDataset(tensors[name], torch.from_numpy(np.asarray(y, dtype=np.int64)))
            for name, (_, y) in raw.items()
        }

    @property
    def train_dataset(self) -> TensorDataset:
        """Training split: ``(input_shape, ())`` float32/int64 pairs; needs `setup` first."""
        return self._split("train")

    @property
    def val_dataset(self) -> TensorDataset:
        """Validation split, drawn from the training data with ``split_seed``; needs `setup`."""
        return self._split("val")

    @property
    def test_dataset(self) -> TensorDataset:
        """Test split (official, or drawn with ``split_seed``); needs `setup` first."""
        return self._split("test")

    @property
    def mean(self) -> Tensor | None:
        """``(C,)`` per-channel mean of the scaled train split, or None without ``normalize``."""
        return self._mean

    @property
    def std(self) -> Tensor | None:
        """``(C,)`` per-channel std (population) of the scaled train split, or None."""
        return self._std

    @override
    def train_dataloader(self) -> DataLoader[tuple[Tensor, ...]]:
        """Return the shuffled training loader (order seeded by the global RNG)."""
        return self._loader(self.train_dataset, self.batch_size, shuffle=True)

    @override
    def val_dataloader(self) -> DataLoader[tuple[Tensor, ...]]:
        """Return the validation loader, in a fixed order."""
        return self._loader(self.val_dataset, self._eval_batch_size, shuffle=False)

    @override
    def test_dataloader(self) -> DataLoader[tuple[Tensor, ...]]:
        """Return the test loader, in a fixed order."""
        return self._loader(self.test_dataset, self._eval_batch_size, shuffle=False)

    @property
    def _eval_batch_size(self) -> int:
        return self.batch_size if self.eval_batch_size is None else self.eval_batch_size

    def _loader(
        self, dataset: TensorDataset, batch_size: int, *, shuffle: bool
    ) -> DataLoader[tuple[Tensor, ...]]:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
        )

    def _split(self, name: str) -> TensorDataset:
        if self._splits is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its datasets")
        return self._splits[name]

    def _check(self, arrays: RawArrays) -> None:
        """Check loaded arrays against ``input_shape`` and ``num_classes``.

        Raises:
            ValueError: when shapes or label values do not match.
        """
        pairs = [(arrays.inputs, arrays.targets), (arrays.test_inputs, arrays.test_targets)]
        for inputs, targets in pairs:
            if inputs is None or targets is None:
                continue
            if tuple(inputs.shape[1:]) != self.input_shape or targets.shape != inputs.shape[:1]:
                raise ValueError(
                    f"{type(self).__name__}: loaded inputs {inputs.shape} and targets "
                    f"{targets.shape}; expected (N, *{self.input_shape}) and (N,)"
                )
            if len(targets) and not 0 <= targets.min() <= targets.max() < self.num_classes:
                raise ValueError(
                    f"{type(self).__name__}: labels span [{targets.min()}, {targets.max()}]; "
                    f"expected [0, {self.num_classes - 1}]"
                )


def _to_float(inputs: np.ndarray, scale: float) -> Tensor:
    """Convert stored values to floats.

    Returns:
        ``(N, ...)`` float32 tensor of ``inputs * scale``, a new copy.
    """
    # A copy, so normalising in place never writes into arrays a subclass may have cached.
    tensor = torch.tensor(inputs, dtype=torch.float32)
    return tensor.mul_(scale) if scale != 1.0 else tensor


def _channel_std_mean(inputs: Tensor) -> tuple[Tensor, Tensor]:
    """Return the ``(C,)`` population std (floored) and mean of ``(N, C, ...)`` inputs."""
    dims = [0, *range(2, inputs.ndim)]
    std, mean = torch.std_mean(inputs, dim=dims, correction=0)
    return std.clamp_min(_MIN_STD), mean


def _standardize_(inputs: Tensor, mean: Tensor, std: Tensor) -> None:
    """Standardise ``(N, C, ...)`` inputs in place with ``(C,)`` statistics."""
    shape = (1, -1) + (1,) * (inputs.ndim - 2)
    inputs.sub_(mean.view(shape)).div_(std.view(shape))
