"""Shared test settings: offline wandb, probe side-effect checks, clean DDP ports."""

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["LSUITE_CHECK_PROBES"] = "1"
# Tiny models run many times faster on one thread than on two contended ones.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _clean_distributed_env(monkeypatch):
    """Each test starts without the port, rank and seed variables an earlier run left behind."""
    # PL_GLOBAL_SEED, set by seed_everything, also seeds the DistributedSampler's shuffle.
    leaked = ("MASTER_PORT", "MASTER_ADDR", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "RANK")
    for key in (*leaked, "PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
        monkeypatch.delenv(key, raising=False)
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key, raising=False)


def pytest_collection_modifyitems(config, items):
    """Run the DDP tests one after another on one xdist worker (``--dist loadgroup``).

    Each starts 2 gloo processes; two at once on 2 cores would be 4 processes racing for ports.
    """
    for item in items:
        if item.get_closest_marker("ddp") is not None:
            item.add_marker(pytest.mark.xdist_group("ddp"))
