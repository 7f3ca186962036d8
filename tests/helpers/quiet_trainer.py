"""A Lightning Trainer for in-process tests: no logger, checkpoints, progress bar or summary."""

from lightning.pytorch import Trainer


def quiet_trainer(root, **kwargs) -> Trainer:
    """Return ``Trainer(**kwargs)`` writing under ``root``, with nothing a test does not read."""
    settings = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": root,
    }
    return Trainer(**{**settings, **kwargs})
