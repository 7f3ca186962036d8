"""Locate the packaged Hydra configs (``lsuite/conf`` in a wheel, ``conf/`` in a checkout)."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    """Return the directory holding ``train.yaml``.

    Returns:
        ``lsuite/conf`` inside an installed wheel, or the checkout's top-level ``conf/``.

    Raises:
        FileNotFoundError: when neither exists (a broken install).
    """
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"lsuite configs not found in {package / 'conf'} or {package.parent / 'conf'}"
    )
