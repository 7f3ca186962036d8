"""Start a run from the weights of a checkpoint or state dict (``init_from=PATH``)."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from lsuite.anchors.files import match_keys
from lsuite.errors import ConfigError

log = logging.getLogger("lsuite")

KEY = "init_from"


def apply_init_from(cfg: DictConfig, module: nn.Module) -> None:
    """Load ``cfg.init_from`` into ``module`` (when set) and record its absolute path in ``cfg``.

    Only the weights are loaded (every parameter and buffer, BatchNorm statistics included): the
    optimizer, scheduler, step and epoch start fresh.

    Args:
        cfg: the composed config; ``cfg.init_from`` is rewritten to the absolute file path.
        module: the freshly built module (e.g. a `Classifier`, keys ``net.*``).

    Raises:
        ConfigError: when the file is missing or unreadable, or does not fit the model.
    """
    value = cfg.get(KEY)
    if value is None:
        return
    path = Path(str(value)).expanduser().resolve()
    load_initial_weights(module, path)
    cfg[KEY] = str(path)
    log.info("init_from: weights from %s (fresh optimizer, step 0)", path)


def load_initial_weights(module: nn.Module, path: str | Path) -> None:
    """Copy the weights of ``path`` into ``module``, keys matched up to one prefix.

    Accepts a Lightning checkpoint (its ``state_dict``), a dict with a ``state_dict`` entry, or a
    plain state dict (``torch.save(net.state_dict(), path)``); keys may differ from the module's
    by one prefix on either side (``net.``, ``model.``, ``module.``, ``_orig_mod.``).

    Args:
        module: the module to fill; every entry of its ``state_dict`` must be found.
        path: the file.

    Raises:
        ConfigError: one line naming the first key that does not fit, both shapes and the file.
    """
    file = Path(path)
    state = _read_state(file)
    like = module.state_dict()
    try:
        matched = match_keys(state, like, key=f"{KEY} ({file})")
    except ConfigError as error:
        if "has shape" in str(error):
            raise
        raise ConfigError(_missing_message(state, like, file)) from error
    used = _used_keys(state, matched)
    extra = [k for k in state if k.replace("_orig_mod.", "") not in used]
    if extra:
        raise ConfigError(
            f"{KEY}: {str(file)!r} has key {extra[0]!r} (file shape "
            f"{tuple(state[extra[0]].shape)}, model: missing; {len(extra)} such keys); expected "
            "weights of the same architecture"
        )
    with torch.no_grad():
        for name, tensor in like.items():
            tensor.copy_(matched[name].to(dtype=tensor.dtype))


def _read_state(file: Path) -> Mapping[str, Tensor]:
    if not file.is_file():
        raise ConfigError(f"{KEY}: got {str(file)!r}; expected a checkpoint or state-dict file")
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ConfigError(
            f"{KEY}: cannot read {str(file)!r} with torch.load(weights_only=True) ({error}); "
            "save the weights with torch.save(model.state_dict(), path)"
        ) from error
    state = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        found = sorted(loaded)[:8] if isinstance(loaded, Mapping) else type(loaded).__name__
        raise ConfigError(
            f"{KEY}: {str(file)!r} holds no state dict of tensors (top-level keys: {found})"
        )
    return state


def _used_keys(state: Mapping[str, Tensor], matched: Mapping[str, Tensor]) -> set[str]:
    """Return the (``_orig_mod.``-free) file keys that `match_keys` picked, found by identity."""
    picked = {id(v) for v in matched.values()}
    return {k.replace("_orig_mod.", "") for k, v in state.items() if id(v) in picked}


def _missing_message(state: Mapping[str, Tensor], like: Mapping[str, Tensor], file: Path) -> str:
    """Name the first model key without a counterpart in the file (after the best prefix)."""
    names = {k.replace("_orig_mod.", "") for k in state}
    for key, tensor in like.items():
        if not any(n == key or n.endswith("." + key) or key.endswith("." + n) for n in names):
            return (
                f"{KEY}: {str(file)!r} has no entry for the model's {key!r} (model shape "
                f"{tuple(tensor.shape)}, file: missing; file keys such as {sorted(names)[:3]}); "
                "expected weights of the same architecture"
            )
    first = next(iter(like))
    return (
        f"{KEY}: the keys of {str(file)!r} do not fit the model (model key {first!r}, file keys "
        f"such as {sorted(names)[:3]}); expected the same architecture, keys equal up to one prefix"
    )
