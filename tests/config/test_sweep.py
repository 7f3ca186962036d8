"""Sweep naming (wandb group, safe job directory names) and the SLURM launcher preset."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import open_dict

from lsuite.config.paths import config_dir
from lsuite.config.sweep import MAX_DIRNAME, job_dirname, name_run, name_sweep


def test_sweep_name_is_the_sweep_directory_in_a_multirun_only(job):
    cfg = job(RunMode.MULTIRUN)
    name_sweep(cfg)
    assert cfg.sweep_name == "my_sweep"
    cfg = job(RunMode.RUN)
    name_sweep(cfg)
    assert cfg.sweep_name is None
    cfg = job(RunMode.MULTIRUN)
    with open_dict(cfg):
        cfg.sweep_name = "chosen"
    name_sweep(cfg)
    assert cfg.sweep_name == "chosen"


def test_run_without_overrides_is_named_after_its_directory(job, tmp_path):
    cfg = job(RunMode.RUN)
    name_run(cfg)
    assert cfg.run_name == "optim.lr=0.5"  # the overrides, when there are some
    with open_dict(cfg):
        cfg.run_name = ""  # what ${hydra:job.override_dirname} gives without overrides
    name_run(cfg)
    assert cfg.run_name == "run"  # tmp_path / "run"
    assert cfg.logger.wandb.name == "run"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ("model.width=32,optim.lr=0.1", "model.width=32,optim.lr=0.1"),
        ("data.data_dir=/data/mnist,optim.lr=0.1", "data.data_dir=_data_mnist,optim.lr=0.1"),
        ("", "-"),
    ],
    ids=["plain", "path", "empty"],
)
def test_job_dirname(overrides, expected):
    assert job_dirname(overrides) == expected


def test_long_job_dirnames_are_cut_and_stay_unique():
    a = job_dirname("x" * 300 + ",optim.lr=0.1")
    b = job_dirname("x" * 300 + ",optim.lr=0.2")
    assert a != b
    assert len(a.encode()) <= MAX_DIRNAME
    assert a.startswith("x" * 100)


def test_slurm_preset_follows_the_trainer():
    GlobalHydra.instance().clear()
    overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s > 0  # submitit requeues
    assert cfg.trainer.strategy == "ddp"  # srun starts the ranks
