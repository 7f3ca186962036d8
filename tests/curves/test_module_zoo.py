"""Every module of the ``module`` group trains around every network of ``conf/model``.

Each case composes the real config (``model=``, ``module=``, tiny widths), builds the module with
`lsuite.config.build.build_module`, and runs 2 training steps and 1 validation batch with a plain
Lightning Trainer. The 1-D ResNet and CNN see MNIST-1D-shaped inputs; the MLP the digits.
"""

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from quiet_trainer import quiet_trainer
from torch.utils.data import DataLoader, TensorDataset

from lsuite.config.build import build_module, call, instantiate
from lsuite.config.paths import config_dir

MODELS = {
    "mlp": ((1, 8, 8), ["model.width=8", "model.depth=1"]),
    "cnn": ((1, 40), ["model.channels=[4,4]"]),
    "resnet": ((1, 40), ["model.depth=8", "model.width=0.25", "model.num_groups=2"]),
}
MODULES = {
    "curve": ["module.bn_batches=1", "module.num_eval_points=3"],
    "simplex": ["module.bn_batches=1", "module.ensemble_size=2", "module.eval_resolution=1"],
    "subspace": ["module.eval_points=2"],
    "random_subspace": ["module.dim=16"],
}


class _Data:
    """A stand-in for a datamodule: the input shape, the classes and 2 batches of random data."""

    num_classes = 10

    def __init__(self, shape):
        self.input_shape = shape
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(16, *shape, generator=generator)
        targets = torch.randint(0, 10, (16,), generator=generator)
        self._data = TensorDataset(inputs, targets)

    def train_dataloader(self):
        return DataLoader(self._data, batch_size=8)

    val_dataloader = train_dataloader


def _config(model, module, extra):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            overrides = [f"model={model}", f"module={module}", "seed=0", *MODELS[model][1]]
            return compose("train", overrides=[*overrides, *MODULES.get(module, []), *extra])
    finally:
        GlobalHydra.instance().clear()


def _point_specs(cfg, data, directory, count):
    """``count`` differently initialised networks of ``cfg.model`` saved as state dicts."""
    paths = []
    for seed in range(count):
        torch.manual_seed(seed + 1)
        net = call(
            instantiate(cfg.model, "model"),
            "model",
            input_shape=data.input_shape,
            num_classes=data.num_classes,
        )
        paths.append(str(directory / f"point{seed}.pt"))
        torch.save(net.state_dict(), paths[-1])
    return paths


@pytest.mark.slow  # 12 short fits, ~17 s together
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("module", list(MODULES))
def test_module_trains_around_every_model(tmp_path, model, module):
    data = _Data(MODELS[model][0])
    extra = []
    if module in ("curve", "simplex"):
        specs = _point_specs(_config(model, "classifier", []), data, tmp_path, 2)
        extra = (
            [f"module.start={specs[0]}", f"module.end={specs[1]}"]
            if module == "curve"
            else [f"module.vertices=[{specs[0]},{specs[1]}]"]
        )
    cfg = _config(model, module, extra)
    torch.manual_seed(0)
    lightning_module = build_module(cfg, data)
    trained = [p for p in lightning_module.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trained]
    trainer = quiet_trainer(
        tmp_path, max_steps=2, limit_val_batches=1, accelerator="cpu", devices=1
    )
    trainer.fit(lightning_module, data.train_dataloader(), data.val_dataloader())
    assert trainer.global_step == 2
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and torch.isfinite(metrics["val/loss"])
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, trained, strict=True))
    # the network the probes measure is a plain network of the model, with finite outputs
    net = lightning_module.probe_network()
    inputs = data.train_dataloader().dataset.tensors[0][:4]
    with torch.no_grad():
        assert torch.isfinite(net.eval()(inputs)).all()
