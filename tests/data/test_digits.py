import re

import pytest
import torch

from lsuite.data.digits import DigitsDataModule
from lsuite.errors import ConfigError


def test_shape_known_before_setup_and_batches_match():
    module = DigitsDataModule(batch_size=32)
    assert (module.input_shape, module.num_classes) == ((1, 8, 8), 10)
    module.setup("fit")
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (32, *module.input_shape) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.int64
    assert y.min() >= 0 and y.max() < module.num_classes


def test_split_sizes():
    module = DigitsDataModule()
    module.setup("fit")
    # 1797 -> test round(0.2 * 1797) = 359; rest 1438 -> val round(143.8) = 144
    sizes = [len(module.train_dataset), len(module.val_dataset), len(module.test_dataset)]
    assert sizes == [1294, 144, 359]


def test_seed_fixes_test_and_val_splits():
    def split(seed):
        module = DigitsDataModule(split_seed=seed, normalize=False)
        module.setup("test")
        return module.val_dataset.tensors[0], module.test_dataset.tensors[0]

    (val_a, test_a), (val_b, test_b), (val_c, test_c) = split(0), split(0), split(1)
    assert torch.equal(val_a, val_b) and torch.equal(test_a, test_b)
    assert not torch.equal(test_a, test_c) and not torch.equal(val_a, val_c)


def test_pixels_scaled_to_unit_interval_then_normalised():
    raw = DigitsDataModule(normalize=False)
    raw.setup("fit")
    pixels = raw.train_dataset.tensors[0]
    assert pixels.min() == 0.0 and pixels.max() == 1.0
    module = DigitsDataModule()
    module.setup("fit")
    train = module.train_dataset.tensors[0]
    assert abs(train.mean().item()) < 1e-5 and abs(train.std(correction=0).item() - 1) < 1e-5


@pytest.mark.parametrize("value", [0.0, 1.0, None], ids=["zero", "one", "none"])
def test_bad_test_fraction(value):
    message = f"data.test_fraction: got {value!r}; expected a number in (0, 1)"
    with pytest.raises(ConfigError, match=re.escape(message)):
        DigitsDataModule(test_fraction=value)
