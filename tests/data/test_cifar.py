import pickle
import re
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn

from lsuite.data.cifar import CIFAR10DataModule, CIFAR100DataModule, read_cifar_batch
from lsuite.errors import ConfigError


def test_read_batch_layout(tmp_path, cifar_writer):
    images = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    images[0, 0] = 255  # first image pure red
    images[1, 2, 0, 1] = 7  # second image: one blue pixel at row 0, column 1
    path = cifar_writer(tmp_path / "data_batch_1", images, [3, 8])
    flat = pickle.loads(path.read_bytes())[b"data"]
    assert flat.shape == (2, 3072) and flat[1, 2048 + 1] == 7  # R, G, B planes, row-major
    result, labels = read_cifar_batch(path)
    assert result.dtype == np.uint8 and result.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(result, images)
    np.testing.assert_array_equal(labels, [3, 8])
    assert labels.dtype == np.int64


def test_read_batch_accepts_str_keys(tmp_path):
    path = tmp_path / "batch"
    data = np.arange(3072, dtype=np.uint8)[None]
    path.write_bytes(pickle.dumps({"data": data, "fine_labels": [5]}))
    images, labels = read_cifar_batch(path, b"fine_labels")
    assert images.shape == (1, 3, 32, 32) and labels.tolist() == [5]


def test_read_batch_rejects_missing_key_and_bad_shape(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}))
    with pytest.raises(ValueError, match="no b'fine_labels' entry"):
        read_cifar_batch(path, b"fine_labels")
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}))
    with pytest.raises(ValueError, match=r"expected \(N, 3072\)"):
        read_cifar_batch(path)


def test_cifar10_reads_all_batches(cifar10_dir):
    data_dir, arrays = cifar10_dir
    module = CIFAR10DataModule(data_dir, val_fraction=0.25, normalize=False)
    assert (module.input_shape, module.num_classes) == ((3, 32, 32), 10)
    module.setup("fit")
    assert (len(module.train_dataset), len(module.val_dataset)) == (15, 5)
    test_images, test_labels = module.test_dataset.tensors
    np.testing.assert_allclose(test_images.numpy(), arrays["test"][0] / 255, rtol=1e-6)
    np.testing.assert_array_equal(test_labels.numpy(), arrays["test"][1])
    train_labels = torch.cat([module.train_dataset.tensors[1], module.val_dataset.tensors[1]])
    assert sorted(train_labels.tolist()) == sorted(arrays["train"][1].tolist())


def test_cifar100_uses_fine_labels(cifar100_dir):
    data_dir, arrays = cifar100_dir
    module = CIFAR100DataModule(data_dir)
    assert (module.input_shape, module.num_classes) == ((3, 32, 32), 100)
    module.setup("test")
    np.testing.assert_array_equal(module.test_dataset.tensors[1].numpy(), arrays["test"][1])
    x, _ = next(iter(module.test_dataloader()))
    assert x.shape == (5, 3, 32, 32)


def test_files_directly_in_data_dir(cifar100_dir):
    data_dir, _ = cifar100_dir
    module = CIFAR100DataModule(data_dir / "cifar-100-python")
    assert module.find_dir() == data_dir / "cifar-100-python"


@pytest.mark.parametrize(
    ("cls", "folder", "files"),
    [
        (
            CIFAR10DataModule,
            "cifar-10-batches-py",
            "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch",
        ),
        (CIFAR100DataModule, "cifar-100-python", "train, test"),
    ],
    ids=["cifar10", "cifar100"],
)
def test_missing_files_name_paths_and_files(tmp_path, cls, folder, files):
    message = (
        f"data.data_dir: no {cls.dataset_name} files in {tmp_path}/{folder}, {tmp_path}; "
        f"expected {files}; set data.download=true"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        cls(tmp_path)


def test_bad_augment(cifar10_dir):
    with pytest.raises(ConfigError, match=re.escape("data.augment: got 1; expected true or false")):
        CIFAR10DataModule(cifar10_dir[0], augment=1)


@pytest.mark.parametrize(
    ("augment", "trainer", "changed"),
    [
        (True, SimpleNamespace(training=True), True),
        (True, SimpleNamespace(training=False), False),
        (True, None, False),
        (False, SimpleNamespace(training=True), False),
    ],
    ids=["training", "evaluating", "no-trainer", "augment=false"],
)
def test_augmentation_only_while_training(cifar10_dir, augment, trainer, changed):
    module = CIFAR10DataModule(cifar10_dir[0], augment=augment)
    module.setup("fit")
    module.trainer = trainer
    inputs, targets = module.train_dataset.tensors
    torch.manual_seed(0)
    out_inputs, out_targets = module.on_after_batch_transfer([inputs, targets], 0)
    assert out_inputs.shape == inputs.shape and out_inputs.dtype == inputs.dtype
    assert out_targets is targets
    assert (not torch.equal(out_inputs, inputs)) == changed
    if changed:  # the border is black, i.e. the normalised value of a zero pixel
        black = (-module.mean / module.std).view(1, 3, 1, 1)
        border_values = out_inputs.isclose(black.expand_as(out_inputs)).any()
        assert border_values
    torch.testing.assert_close(module.train_dataset.tensors[0], inputs)  # dataset untouched


class _Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3 * 32 * 32, 10)
        self.batches = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        self.batches["train"].append(batch[0].clone())
        return nn.functional.cross_entropy(self.layer(batch[0].flatten(1)), batch[1])

    def validation_step(self, batch, batch_idx):
        self.batches["val"].append(batch[0].clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_augments_training_batches_only(cifar10_dir):
    module = CIFAR10DataModule(cifar10_dir[0], val_fraction=0.25, batch_size=15)
    recorder = _Recorder()
    trainer = pl.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(recorder, datamodule=module)
    (train_batch,), (val_batch,) = recorder.batches["train"], recorder.batches["val"]
    torch.testing.assert_close(val_batch, module.val_dataset.tensors[0])
    originals = {row.numpy().tobytes() for row in module.train_dataset.tensors[0]}
    assert train_batch.shape == (15, 3, 32, 32)
    assert not all(row.numpy().tobytes() in originals for row in train_batch)
