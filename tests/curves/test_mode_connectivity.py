"""A trained Bezier curve between two MNIST-1D CNNs has a lower maximum loss than the line."""

import functools

import pytest
import torch
from lightning.pytorch import seed_everything
from quiet_trainer import quiet_trainer

from lsuite.data.mnist1d import MNIST1DDataModule
from lsuite.model.classifier import Classifier
from lsuite.model.cnn import CNN
from lsuite.model.curve import CurveModule

CHANNELS = (16, 32)


def _trainer(tmp_path, epochs):
    return quiet_trainer(tmp_path, max_epochs=epochs)


def _cnn(data):
    return CNN(input_shape=data.input_shape, num_classes=data.num_classes, channels=CHANNELS)


@pytest.mark.slow
def test_trained_curve_beats_the_line(tmp_path):
    data = MNIST1DDataModule(batch_size=128)
    data.prepare_data()
    data.setup("fit")
    adam = functools.partial(torch.optim.Adam, lr=3e-3)
    ends = []
    for seed in (0, 1):
        seed_everything(seed)
        module = Classifier(_cnn(data), adam, data.num_classes)
        _trainer(tmp_path, 6).fit(module, datamodule=data)
        ends.append(tmp_path / f"end{seed}.pt")
        torch.save(module.net.state_dict(), ends[-1])
    seed_everything(0)
    curve = CurveModule(_cnn(data), adam, data.num_classes, start=str(ends[0]), end=str(ends[1]))
    trainer = _trainer(tmp_path, 6)
    before = trainer.test(curve, datamodule=data, verbose=False)[0]
    # the untrained curve is the line
    assert before["test/loss_max"] == pytest.approx(before["test/line_loss_max"], rel=1e-5)
    trainer.fit(curve, datamodule=data)
    after = trainer.test(curve, datamodule=data, verbose=False)[0]
    assert after["test/line_loss_max"] == pytest.approx(before["test/line_loss_max"], rel=1e-5)
    assert after["test/loss_max"] < 0.8 * after["test/line_loss_max"]
    assert after["test/error_max"] < after["test/line_error_max"]
