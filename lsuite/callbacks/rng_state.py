"""Keep the random-number generators' states in checkpoints, so a resumed run draws as before."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback


class RNGState(Callback):
    """Save the Python, NumPy, torch (and CUDA) RNG states in every checkpoint; restore on load.

    Lightning restores weights, optimizer, schedulers, loops and callback states from
    ``ckpt_path`` but not the global generators, which draw the data order (the shuffling
    sampler), augmentation and dropout. The states are taken when a checkpoint is written and
    set back when it is loaded, before the first epoch after it creates its data iterator, so a
    run resumed from a checkpoint written at an epoch's end draws the same batches as the run
    that went on. The states are plain tensors and ints (readable with
    ``torch.load(weights_only=True)``).
    """

    @property
    def state_key(self) -> str:
        """One RNG state per checkpoint, whatever the callback's arguments."""
        return "RNGState"

    def state_dict(self) -> dict[str, Any]:
        """Return the current states of every global generator."""
        version, internal, gauss = random.getstate()
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state: dict[str, Any] = {
            "python": (version, list(internal), gauss),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Set every global generator to the saved states."""
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state_dict["torch"])
        cuda = state_dict.get("cuda")
        devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if cuda is not None and len(cuda) == devices:
            torch.cuda.set_rng_state_all(cuda)
