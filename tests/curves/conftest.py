"""Fixtures of the curve and simplex tests: the digits data and a probe batch."""

import pytest

from lsuite.data.digits import DigitsDataModule


@pytest.fixture(scope="module")
def digits():
    data = DigitsDataModule(batch_size=64)
    data.prepare_data()
    data.setup("fit")
    return data


@pytest.fixture(scope="module")
def probe_batches(digits):
    loader = digits.val_dataloader()
    return [next(iter(loader))]
