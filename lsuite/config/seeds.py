"""Seed the weights and the data order of a run: ``seed``, ``init_seed`` and ``data_seed``."""

from __future__ import annotations

from lightning.pytorch import seed_everything
from omegaconf import DictConfig

from lsuite.errors import require


def init_seed(cfg: DictConfig) -> int:
    """Return the seed of the initial weights: ``init_seed``, or ``seed`` when it is null."""
    return _seed(cfg, "init_seed")


def data_seed(cfg: DictConfig) -> int:
    """Return the seed of data order and augmentation: ``data_seed``, or ``seed`` when null."""
    return _seed(cfg, "data_seed")


def splits_streams(cfg: DictConfig) -> bool:
    """Whether the weights and the data have their own seeds (``init_seed`` or ``data_seed`` set).

    Without either, one ``seed_everything(seed)`` before building seeds everything, as in earlier
    versions (the same numbers for the same ``seed``).

    Returns:
        True when either seed is set.
    """
    return cfg.get("init_seed") is not None or cfg.get("data_seed") is not None


def seed_weights(cfg: DictConfig) -> None:
    """Seed every generator before the network is built (its initial weights)."""
    seed_everything(init_seed(cfg), workers=True)


def seed_data(cfg: DictConfig) -> None:
    """Reseed every generator after the network is built, when the streams are split.

    Everything random after this point (data order, augmentation, dropout) then follows
    ``data_seed`` only, whatever the weights were drawn with or loaded from (``init_from``).
    """
    if splits_streams(cfg):
        seed_everything(data_seed(cfg), workers=True)


def _seed(cfg: DictConfig, key: str) -> int:
    value = cfg.get(key)
    if value is None:
        value = cfg.get("seed")
        key = "seed"
    require(
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32,
        key,
        value,
        "an int in [0, 2**32)" + ("" if key == "seed" else " or null (use seed)"),
    )
    return int(value)
