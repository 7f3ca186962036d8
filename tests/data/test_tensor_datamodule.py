import re

import numpy as np
import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler

from lsuite.data.tensor_datamodule import RawArrays, TensorDataModule, split_indices
from lsuite.errors import ConfigError


class Toy(TensorDataModule):
    """100 train and 20 test ``(3, 2, 2)`` samples whose channels have different scales."""

    input_shape = (3, 2, 2)
    num_classes = 4

    def load_arrays(self):
        rng = np.random.default_rng(0)
        offsets = np.array([0.0, 10.0, -3.0]).reshape(1, 3, 1, 1)
        scales = np.array([1.0, 5.0, 0.1]).reshape(1, 3, 1, 1)
        inputs = rng.normal(size=(120, 3, 2, 2)) * scales + offsets
        targets = np.arange(120) % 4
        return RawArrays(inputs[:100], targets[:100], inputs[100:], targets[100:], scale=2.0)


class ToyWithoutTest(Toy):
    test_fraction = 0.25

    def load_arrays(self):
        arrays = super().load_arrays()
        return RawArrays(arrays.inputs, arrays.targets, scale=arrays.scale)


def test_split_indices_partition_and_determinism():
    kept, held_out = split_indices(10, 0.3, torch.Generator().manual_seed(0))
    assert len(held_out) == 3 and len(kept) == 7
    assert sorted([*kept, *held_out]) == list(range(10))
    assert list(kept) == sorted(kept)
    again = split_indices(10, 0.3, torch.Generator().manual_seed(0))
    assert np.array_equal(kept, again[0]) and np.array_equal(held_out, again[1])
    other = split_indices(10, 0.3, torch.Generator().manual_seed(1))
    assert not np.array_equal(held_out, other[1])
    assert len(split_indices(10, 0.0, torch.Generator())[1]) == 0


def splits(module):
    module.setup("fit")
    return [module.train_dataset, module.val_dataset, module.test_dataset]


@pytest.mark.parametrize("cls", [Toy, ToyWithoutTest])
def test_same_seed_same_splits_other_seed_different(cls):
    first, same, other = (splits(cls(val_fraction=0.2, split_seed=s)) for s in (3, 3, 4))
    for a, b in zip(first, same, strict=True):
        assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])
    assert not torch.equal(first[1].tensors[0], other[1].tensors[0])


def test_drawn_test_split_sizes():
    train, val, test = splits(ToyWithoutTest(val_fraction=0.2))
    assert (len(train), len(val), len(test)) == (60, 15, 25)


def test_official_test_set_is_kept_whole():
    train, val, test = splits(Toy(val_fraction=0.2, normalize=False))
    assert (len(train), len(val), len(test)) == (80, 20, 20)
    expected = Toy().load_arrays()
    np.testing.assert_allclose(test.tensors[0].numpy(), expected.test_inputs * 2.0, rtol=1e-6)


def test_normalisation_uses_train_statistics():
    raw_train, raw_val, _ = splits(Toy(normalize=False))
    module = Toy()
    train, val, _ = splits(module)
    dims = (0, 2, 3)
    torch.testing.assert_close(train.tensors[0].mean(dims), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        train.tensors[0].std(dims, correction=0), torch.ones(3), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(module.mean, raw_train.tensors[0].mean(dims))
    expected_val = (raw_val.tensors[0] - module.mean.view(1, 3, 1, 1)) / module.std.view(1, 3, 1, 1)
    torch.testing.assert_close(val.tensors[0], expected_val)


def test_without_normalisation_values_are_scaled_only():
    module = Toy(normalize=False)
    train = splits(module)[0]
    assert module.mean is None and module.std is None
    assert train.tensors[0].dtype == torch.float32 and train.tensors[1].dtype == torch.int64
    assert abs(train.tensors[0][:, 1].mean().item() - 20.0) < 2.0  # offset 10 times scale 2


def test_loaders_shapes_order_and_batch_sizes():
    module = Toy(batch_size=16, eval_batch_size=7)
    assert module.input_shape == (3, 2, 2)  # before setup
    module.setup("fit")
    train, val, test = module.train_dataloader(), module.val_dataloader(), module.test_dataloader()
    assert isinstance(train.sampler, RandomSampler)
    assert isinstance(val.sampler, SequentialSampler) and isinstance(
        test.sampler, SequentialSampler
    )
    x, y = next(iter(train))
    assert x.shape == (16, *module.input_shape) and y.shape == (16,)
    assert (val.batch_size, test.batch_size) == (7, 7)
    assert not train.pin_memory and not train.persistent_workers


def test_workers_persist():
    module = Toy(num_workers=2, pin_memory=True)
    module.setup("fit")
    loader = module.train_dataloader()
    assert loader.num_workers == 2 and loader.persistent_workers and loader.pin_memory


def test_empty_validation_split():
    _, val, _ = splits(Toy(val_fraction=0))
    assert len(val) == 0


def test_datasets_need_setup():
    with pytest.raises(RuntimeError, match=r"setup\(\) must run"):
        Toy().train_dataset  # noqa: B018


def test_arrays_checked_against_input_shape():
    class Wrong(Toy):
        input_shape = (3, 4)

    with pytest.raises(ValueError, match=r"expected \(N, \*\(3, 4\)\)"):
        Wrong().setup("fit")


BAD_ARGUMENTS = [
    ("batch_size", 0, "an int >= 1"),
    ("batch_size", 2.0, "an int >= 1"),
    ("batch_size", True, "an int >= 1"),
    ("num_workers", -1, "an int >= 0"),
    ("val_fraction", 1.0, "a number in [0, 1)"),
    ("val_fraction", -0.1, "a number in [0, 1)"),
    ("val_fraction", "0.1", "a number in [0, 1)"),
    ("split_seed", -1, "an int >= 0"),
    ("normalize", 1, "true or false"),
    ("eval_batch_size", 0, "an int >= 1"),
    ("pin_memory", None, "true or false"),
]


@pytest.mark.parametrize(
    ("key", "value", "expected"), BAD_ARGUMENTS, ids=[f"{k}={v!r}" for k, v, _ in BAD_ARGUMENTS]
)
def test_bad_arguments_name_the_key(key, value, expected):
    message = f"data.{key}: got {value!r}; expected {expected}"
    with pytest.raises(ConfigError, match=re.escape(message)):
        Toy(**{key: value})
