"""Start a run from the weights of a checkpoint or state dict (``init_from=PATH``)."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

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
    optimizer, scheduler, step and epoch start fresh. A module that trains more than one network
    (a subspace) also takes one plain network's weights (see `load_initial_weights`).

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
    into = load_initial_weights(module, path)
    cfg[KEY] = str(path)
    if into is None:
        log.info("init_from: weights from %s (fresh optimizer, step 0)", path)
    else:
        log.info("init_from: network weights from %s: %s (fresh optimizer, step 0)", path, into)


class NetworkInit(Protocol):
    """A module that takes one plain network's weights besides its own state dict.

    `lsuite.model.subspace.Subspace` (they become vertex 0) and
    `lsuite.model.random_subspace.RandomSubspace` (they become ``w0``). Its own state dict holds
    the network's entries as ``net.<key>`` where it holds them at all.
    """

    def network_state_dict(self) -> dict[str, Tensor]:
        """Return the network's parameters and buffers by their names in the network."""
        ...

    def load_network_state_dict(self, state: Mapping[str, Tensor]) -> str:
        """Fill the module from a network's state (the keys of `network_state_dict`).

        Returns:
            What was filled, for the log line.
        """
        ...


def load_initial_weights(module: nn.Module, path: str | Path) -> str | None:
    """Copy the weights of ``path`` into ``module``, keys matched up to one prefix.

    Accepts a Lightning checkpoint (its ``state_dict``), a dict with a ``state_dict`` entry, or a
    plain state dict (``torch.save(net.state_dict(), path)``); keys may differ from the module's
    by one prefix on either side (``net.``, ``model.``, ``module.``, ``_orig_mod.``). A module
    with ``network_state_dict`` and ``load_network_state_dict`` (`NetworkInit`) also accepts the
    weights of one plain network (a state dict, or a `Classifier` checkpoint) when the file does
    not hold the module's own state.

    Args:
        module: the module to fill; every entry of its ``state_dict`` (or of its
            ``network_state_dict``) must be found.
        path: the file.

    Returns:
        None when the module's own state was loaded, else what the module says it filled.

    Raises:
        ConfigError: one line naming the first key that does not fit, both shapes and the file.
    """
    file = Path(path)
    state = _read_state(file)
    like = module.state_dict()
    network = getattr(module, "network_state_dict", None)
    if callable(network):
        network_like = network()
        own = [k for k in like if k.removeprefix("net.") not in network_like]
        if not _has_any(state, own):  # not the module's own state: one network's weights
            matched = _match(state, network_like, file)
            return module.load_network_state_dict(matched)  # type: ignore[operator]
    matched = _match(state, like, file)
    with torch.no_grad():
        for name, tensor in like.items():
            tensor.copy_(matched[name].to(dtype=tensor.dtype))
    return None


def _has_any(state: Mapping[str, Tensor], keys: list[str]) -> bool:
    """Whether ``state`` has one of ``keys`` (up to one prefix on the file's side)."""
    names = {k.replace("_orig_mod.", "") for k in state}
    return any(n == k or n.endswith("." + k) for k in keys for n in names)


def _match(state: Mapping[str, Tensor], like: Mapping[str, Tensor], file: Path) -> dict:
    """Return ``state``'s entry for every key of ``like``; refuse missing and extra keys."""
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
    return matched


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
