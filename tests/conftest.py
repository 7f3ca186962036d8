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
    """Each test starts without the port and rank variables an earlier DDP run left behind."""
    for key in ("MASTER_PORT", "MASTER_ADDR", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "RANK"):
        monkeypatch.delenv(key, raising=False)
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key, raising=False)
