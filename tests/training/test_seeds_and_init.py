"""Seeds (seed, init_seed, data_seed), init_from's weight loading, the module group, RNG states."""

import logging
import random

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from lsuite.callbacks.rng_state import RNGState
from lsuite.config import seeds
from lsuite.config.build import build_module
from lsuite.config.init_from import apply_init_from, load_initial_weights
from lsuite.data.digits import DigitsDataModule
from lsuite.errors import ConfigError
from lsuite.model.classifier import Classifier


def config(**keys):
    base = {"seed": 3, "init_seed": None, "data_seed": None, "init_from": None}
    return OmegaConf.create({**base, **keys})


def test_init_and_data_seeds_fall_back_to_seed():
    assert (seeds.init_seed(config()), seeds.data_seed(config())) == (3, 3)
    assert not seeds.splits_streams(config())
    cfg = config(init_seed=5, data_seed=7)
    assert (seeds.init_seed(cfg), seeds.data_seed(cfg), seeds.splits_streams(cfg)) == (5, 7, True)


@pytest.mark.parametrize("bad", [-1, 1.5, "x", True, 2**32])
def test_bad_seed_names_the_key(bad):
    with pytest.raises(ConfigError, match=r"^data_seed: got .*; expected an int in \[0, 2\*\*32\)"):
        seeds.data_seed(config(data_seed=bad))


def test_data_seed_alone_decides_what_follows_the_weights():
    def draws(**keys):
        cfg = config(**keys)
        seeds.seed_weights(cfg)
        weights = torch.randn(3)
        seeds.seed_data(cfg)
        return weights, torch.randn(3)

    w1, d1 = draws(init_seed=1, data_seed=9)
    w2, d2 = draws(init_seed=2, data_seed=9)
    w3, d3 = draws(init_seed=1, data_seed=8)
    assert not torch.equal(w1, w2) and torch.equal(d1, d2)  # weights differ, data stream same
    assert torch.equal(w1, w3) and not torch.equal(d1, d3)  # weights same, data stream differs


def mlp_module():
    cfg = OmegaConf.create(
        {
            "model": {"_target_": "lsuite.model.mlp.MLP", "_partial_": True, "width": 8},
            "module": {"_target_": "lsuite.model.classifier.Classifier", "_partial_": True},
            "optim": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
            "scheduler": None,
            "l2": 0.0,
        }
    )
    return cfg


def test_module_group_builds_the_classifier_and_old_configs_still_build():
    cfg = mlp_module()
    datamodule = DigitsDataModule()
    module = build_module(cfg, datamodule)
    assert isinstance(module, Classifier)
    del cfg["module"]  # a config of an earlier version
    assert isinstance(build_module(cfg, datamodule), Classifier)


def test_module_group_takes_any_target_with_the_same_arguments():
    cfg = mlp_module()
    cfg.module._target_ = "lsuite.model.classifier.Nope"
    with pytest.raises(ConfigError, match=r"^module"):
        build_module(cfg, DigitsDataModule())


def two_modules():
    torch.manual_seed(0)
    net = lambda: nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))  # noqa: E731
    make = lambda: Classifier(net(), optimizer=torch.optim.SGD, num_classes=3)  # noqa: E731
    return make(), make()


@pytest.mark.parametrize("kind", ["plain_net", "lightning", "compiled"])
def test_init_from_loads_every_weight_and_buffer_up_to_a_prefix(kind, tmp_path):
    source, target = two_modules()
    source.net[1].running_mean.add_(1.0)
    path = tmp_path / "w.pt"
    if kind == "plain_net":
        torch.save(source.net.state_dict(), path)
    elif kind == "lightning":
        torch.save({"state_dict": source.state_dict(), "global_step": 7}, path)
    else:
        torch.save({f"_orig_mod.{k}": v for k, v in source.net.state_dict().items()}, path)
    load_initial_weights(target, path)
    for key, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[key]), key


def test_init_from_records_the_absolute_path(tmp_path, monkeypatch, caplog):
    source, target = two_modules()
    torch.save(source.state_dict(), tmp_path / "w.pt")
    monkeypatch.chdir(tmp_path)
    cfg = config(init_from="w.pt")
    with caplog.at_level(logging.INFO, logger="lsuite"):
        apply_init_from(cfg, target)
    assert cfg.init_from == str(tmp_path / "w.pt")
    assert "init_from: weights from" in caplog.text


def test_init_from_shape_mismatch_is_one_line_with_key_shapes_and_file(tmp_path):
    _, target = two_modules()
    other = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))
    path = tmp_path / "other.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(ConfigError) as info:
        load_initial_weights(target, path)
    message = str(info.value)
    assert "\n" not in message and message.startswith("init_from")
    assert "'0.weight'" in message and "(5, 4)" in message and "(6, 4)" in message
    assert str(path) in message


def test_init_from_missing_and_unexpected_keys_name_the_first(tmp_path):
    source, target = two_modules()
    state = source.net.state_dict()
    missing = {k: v for k, v in state.items() if not k.startswith("2.")}
    torch.save(missing, tmp_path / "missing.pt")
    expected = r"^init_from: .*missing\.pt.* no entry for the model's 'net\.2\.weight'"
    with pytest.raises(ConfigError, match=expected + r" \(model shape \(3, 6\), file: missing"):
        load_initial_weights(target, tmp_path / "missing.pt")
    torch.save({**state, "3.weight": torch.zeros(2)}, tmp_path / "extra.pt")
    expected = r"^init_from: .*extra\.pt.* has key '3\.weight' \(file shape \(2,\), model: missing"
    with pytest.raises(ConfigError, match=expected):
        load_initial_weights(target, tmp_path / "extra.pt")
    with pytest.raises(ConfigError, match=r"^init_from: got .*nope\.pt'; expected a checkpoint"):
        load_initial_weights(target, tmp_path / "nope.pt")


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save({"callbacks": {"RNGState": RNGState().state_dict()}}, tmp_path / "c.ckpt")
    expected = (random.random(), np.random.rand(), torch.rand(2))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    loaded = torch.load(tmp_path / "c.ckpt", weights_only=True)
    RNGState().load_state_dict(loaded["callbacks"]["RNGState"])
    got = (random.random(), np.random.rand(), torch.rand(2))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


def test_an_earlier_config_with_data_seed_builds_with_that_split_seed():
    from lsuite.config.build import build_datamodule

    old = OmegaConf.create({"data": {"_target_": "lsuite.data.digits.DigitsDataModule", "seed": 4}})
    assert build_datamodule(old).split_seed == 4
    new = OmegaConf.create({"data": {"_target_": "lsuite.data.digits.DigitsDataModule"}})
    assert build_datamodule(new).split_seed == 0
