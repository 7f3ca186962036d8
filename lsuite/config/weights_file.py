"""Load a state dict or someone else's Lightning checkpoint into a module, keys up to one prefix."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from lsuite.config.run_checkpoints import read_checkpoint
from lsuite.errors import ConfigError

_COMPILED = "_orig_mod."


def file_state(path: Path) -> dict[str, Tensor]:
    """Return the tensors of a file: a Lightning checkpoint's ``state_dict`` or a plain state dict.

    Args:
        path: the file.

    Returns:
        ``key -> tensor`` (``torch.compile``'s ``_orig_mod.`` removed from the keys).

    Raises:
        ConfigError: when the file holds no state dict of tensors.
    """
    loaded = read_checkpoint(path)
    state = loaded.get("state_dict", loaded)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(
            f"--weights: {str(path)!r} holds no state dict of tensors (top-level keys: "
            f"{sorted(map(str, loaded))[:8]})"
        )
    return {str(k).replace(_COMPILED, ""): v for k, v in state.items()}


def match_state(model: Mapping[str, Tensor], state: Mapping[str, Tensor], path: Path) -> dict:
    """Rename ``state``'s keys to ``model``'s, allowing one prefix on either side, and check shapes.

    Args:
        model: the module's state dict (keys and shapes wanted).
        state: the file's tensors.
        path: the file, for the message.

    Returns:
        ``state`` under ``model``'s keys.

    Raises:
        ConfigError: one line naming the first missing, unexpected or mis-shaped key, both shapes
            and the file.
    """
    strip, add = _best_prefix(list(model), list(state))
    names = {k: add + k[len(strip) :] if k.startswith(strip) else k for k in model}
    for key, name in names.items():
        want = tuple(model[key].shape)
        if name not in state:
            raise ConfigError(
                f"--weights: {str(path)!r} has no key {name!r} for the model's {key!r} "
                f"(model shape {want}, file: missing); expected the model's architecture"
            )
        got = tuple(state[name].shape)
        if got != want:
            raise ConfigError(
                f"--weights: {str(path)!r} key {name!r} has shape {got}; the model's {key!r} has "
                f"shape {want}; expected the model's architecture"
            )
    used = set(names.values())
    extra = [k for k in state if k not in used]
    if extra:
        raise ConfigError(
            f"--weights: {str(path)!r} has unexpected key {extra[0]!r} (file shape "
            f"{tuple(state[extra[0]].shape)}, model: missing; {len(extra)} unexpected in all); "
            "expected the model's architecture"
        )
    return {k: state[n] for k, n in names.items()}


def load_weights_file(module: nn.Module, path: Path) -> None:
    """Load ``path`` into ``module`` (every parameter and buffer; see `match_state`).

    Args:
        module: the module, e.g. an lsuite `Classifier` (keys ``net.*``).
        path: a state dict or Lightning checkpoint file.
    """
    state = match_state(module.state_dict(), file_state(path), path)
    module.load_state_dict(state, strict=True)


def _best_prefix(model: list[str], state: list[str]) -> tuple[str, str]:
    """Return ``(strip from model keys, add to them)`` that maps the most keys into ``state``."""
    candidates: list[tuple[str, str]] = [("", "")]
    if model:
        first = model[0]
        for s in state:
            if s.endswith(first) and s != first and s[-len(first) - 1] == ".":
                candidates.append(("", s[: len(s) - len(first)]))
            if first.endswith(s) and first != s and first[-len(s) - 1] == ".":
                candidates.append((first[: len(first) - len(s)], ""))
            # both sides prefixed differently: net.a.b vs model.a.b
            head, _, rest = first.partition(".")
            if rest and s.endswith("." + rest) and s != first:
                candidates.append((head + ".", s[: len(s) - len(rest)]))
    keys = set(state)

    def hits(candidate: tuple[str, str]) -> int:
        strip, add = candidate
        return sum(add + k[len(strip) :] in keys for k in model if k.startswith(strip))

    return max(dict.fromkeys(candidates), key=hits)


__all__ = ["file_state", "load_weights_file", "match_state"]
