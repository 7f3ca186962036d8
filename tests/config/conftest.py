"""Fixtures of config tests: a composed job config with Hydra's runtime state set."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from lsuite.config.paths import config_dir


@pytest.fixture
def job(tmp_path):
    """Return a function that makes a job config in ``tmp_path/run`` for a Hydra mode."""

    def make(mode):
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=["optim.lr=0.5"], return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
            cfg.hydra.sweep.dir = str(tmp_path / "my_sweep")
            cfg.hydra.mode = mode
            cfg.hydra.job.num = 3
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield make
    GlobalHydra.instance().clear()
