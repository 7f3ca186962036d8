"""Sweep naming: the wandb group of a multirun, and safe job directory names."""

import pytest
from hydra.types import RunMode
from omegaconf import open_dict

from lsuite.config.sweep import MAX_DIRNAME, job_dirname, name_sweep


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
