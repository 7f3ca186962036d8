"""Every YAML under conf/ is composed and instantiated; a YAML no rule covers fails the suite."""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.loggers import Logger
from omegaconf import open_dict

from lsuite.callbacks.probe_callback import ProbeCallback
from lsuite.config.build import build_module, instantiate
from lsuite.config.paths import config_dir
from lsuite.config.validate import validate
from lsuite.errors import ConfigError

CONF = config_dir()
LIST_GROUPS = {"probes", "callbacks", "logger"}
# Groups whose options are checked by composing only (Hydra's own settings).
COMPOSE_ONLY = {"hydra", "hydra/launcher"}


def write_fake_datasets(root: Path) -> None:
    """Write tiny MNIST-format IDX files and CIFAR pickle batches in torchvision's layout."""
    rng = np.random.default_rng(0)
    for name in ("MNIST", "FashionMNIST"):
        raw = root / name / "raw"
        raw.mkdir(parents=True)
        for prefix, n in (("train", 40), ("t10k", 20)):
            images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
            labels = (np.arange(n) % 10).astype(np.uint8)
            header = np.array([0x0803, n, 28, 28], dtype=">i4").tobytes()
            with gzip.open(raw / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
                f.write(header + images.tobytes())
            with gzip.open(raw / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
                f.write(np.array([0x0801, n], dtype=">i4").tobytes() + labels.tobytes())
    c10 = root / "cifar-10-batches-py"
    c10.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
            b"labels": list(range(10)),
        }
        (c10 / name).write_bytes(pickle.dumps(batch))
    c100 = root / "cifar-100-python"
    c100.mkdir()
    for name in ("train", "test"):
        batch = {
            b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
            b"fine_labels": list(range(20)),
        }
        (c100 / name).write_bytes(pickle.dumps(batch))


def options() -> list[tuple[str, str]]:
    """Every (group, option) pair found on disk, e.g. ("model", "mlp"), ("hydra/launcher", "x")."""
    found = []
    for path in sorted(CONF.rglob("*.yaml")):
        rel = path.relative_to(CONF)
        if len(rel.parts) > 1:
            found.append(("/".join(rel.parts[:-1]), path.stem))
    return found


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_datasets(root)
    return root


def compose_with(overrides, tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "train", overrides=[*overrides, f"hydra.run.dir={tmp_path}"], return_hydra_config=True
        )
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    return cfg


def build_everything(cfg, tmp_path):
    """Instantiate every group of a composed config, as lsuite-train does, without fitting."""
    datamodule = instantiate(cfg.data, "data")
    assert isinstance(datamodule, LightningDataModule)
    module = build_module(cfg, datamodule)
    out = module(torch.zeros(2, *datamodule.input_shape))  # the forward of any module
    assert out.shape == (2, datamodule.num_classes)
    optimizer = instantiate(cfg.optim, "optim")(params=list(module.parameters()))
    assert isinstance(optimizer, torch.optim.Optimizer)
    if cfg.get("scheduler") is not None:
        scheduler = instantiate(cfg.scheduler, "scheduler")(optimizer, total_steps=100)
        assert hasattr(scheduler, "step")
    loggers = [instantiate(node, f"logger.{k}") for k, node in (cfg.get("logger") or {}).items()]
    assert all(isinstance(lg, Logger) for lg in loggers)
    callbacks = [  # a null node is a callback switched off (callbacks.last_checkpoint=null)
        instantiate(node, f"callbacks.{k}")
        for k, node in (cfg.get("callbacks") or {}).items()
        if node is not None
    ]
    probes = [instantiate(node, f"probes.{k}") for k, node in (cfg.get("probes") or {}).items()]
    assert all(isinstance(c, Callback) for c in callbacks)
    assert all(isinstance(p, ProbeCallback) for p in probes)
    validate(cfg)
    if cfg.trainer.accelerator not in ("gpu", "cuda"):
        trainer = instantiate(
            cfg.trainer, "trainer", logger=False, callbacks=[], default_root_dir=str(tmp_path)
        )
        assert isinstance(trainer, Trainer)
    return datamodule, module


def overrides_for(group, option, data_dir):
    base = (
        [f"data.data_dir={data_dir}"]
        if group == "data" and option not in ("digits", "mnist1d")
        else []
    )
    if group in LIST_GROUPS:
        return [*base, f"{group}=[{option}]"]
    return [*base, f"{group}={option}"]


@pytest.mark.parametrize(("group", "option"), options(), ids=[f"{g}={o}" for g, o in options()])
def test_option_composes_and_instantiates(group, option, data_dir, tmp_path):
    cfg = compose_with(overrides_for(group, option, data_dir), tmp_path)
    if group in COMPOSE_ONLY:
        assert cfg.hydra is not None
        return
    if group == "experiment":
        data_option = cfg.hydra.runtime.choices.get("data")
        if data_option not in ("digits", "mnist1d"):
            cfg = compose_with([f"experiment={option}", f"data.data_dir={data_dir}"], tmp_path)
    if (
        group == "trainer"
        and cfg.trainer.accelerator in ("gpu", "cuda")
        and not torch.cuda.is_available()
    ):
        with pytest.raises(ConfigError, match=r"trainer\.devices"):
            validate(cfg)
        return
    if group == "module" and option in ("curve", "simplex"):  # their ends are required
        ends = _ends(tmp_path, option)
        cfg = compose_with([*overrides_for(group, option, data_dir), *ends], tmp_path)
    build_everything(cfg, tmp_path)


def _ends(tmp_path, option):
    """Overrides naming two default MLPs (digits) as a curve's ends / a simplex's vertices."""
    from lsuite.model.mlp import MLP

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"end{seed}.pt")
        torch.save(MLP(input_shape=(1, 8, 8), num_classes=10).state_dict(), paths[-1])
    if option == "simplex":
        return [f"module.vertices=[{paths[0]},{paths[1]}]"]
    return [f"module.start={paths[0]}", f"module.end={paths[1]}"]


def test_default_config_builds(tmp_path):
    build_everything(compose_with([], tmp_path), tmp_path)


def test_every_yaml_is_covered():
    """A YAML in a group with no rule above (or outside any group) must fail here."""
    known_groups = {
        "data",
        "model",
        "module",
        "optim",
        "scheduler",
        "trainer",
        "logger",
        "callbacks",
        "probes",
        "experiment",
    }
    known_groups |= COMPOSE_ONLY
    covered = {CONF / "train.yaml"} | {
        CONF / g / f"{o}.yaml" for g, o in options() if g in known_groups
    }
    uncovered = sorted(str(p.relative_to(CONF)) for p in CONF.rglob("*.yaml") if p not in covered)
    assert not uncovered, (
        f"no test instantiates {uncovered}; add a rule to tests/config/test_every_config.py"
    )
