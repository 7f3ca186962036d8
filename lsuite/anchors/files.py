"""Load points from files: Lightning checkpoints, state dicts and run directories."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

from lsuite.anchors.specs import PointSpec, parse_spec, read_file
from lsuite.errors import ConfigError
from lsuite.functional.params import Params
from lsuite.probes.point import as_params

_STEP_IN_NAME = re.compile(r"step=?(\d+)")


def checkpoint_path(spec: PointSpec, key: str) -> Path:
    """Return the file a ``file`` or ``run`` spec names (a run's ``checkpoints/`` entry).

    A run directory keeps its checkpoints in ``RUN_DIR/checkpoints/``: ``last.ckpt``,
    ``best*.ckpt`` (``best-epochNNN.ckpt``) and any per-epoch / per-step files; ``step:N``
    is the file whose name carries ``step=N`` (Lightning's ``epoch=E-step=N.ckpt``) or, failing
    that, whose ``global_step`` is ``N``.

    Args:
        spec: a parsed spec of kind ``file`` or ``run``.
        key: the argument name for error messages.

    Returns:
        The checkpoint file.

    Raises:
        ConfigError: when the spec is of another kind or the checkpoint does not exist.
    """
    if spec.kind == "file" and spec.path is not None:
        return spec.path
    if spec.kind != "run" or spec.path is None:
        raise ConfigError(f"{key}: {spec.text!r} is not a file or run directory")
    folder = spec.path / "checkpoints"
    files = sorted(folder.glob("*.ckpt")) if folder.is_dir() else []
    if not files:
        raise ConfigError(f"{key}: got {spec.text!r}; {str(folder)!r} holds no .ckpt files")
    names = [f.name for f in files]
    if spec.which == "last":
        found = [f for f in files if f.name == "last.ckpt"]
    elif spec.which == "best":
        found = [f for f in files if f.name.startswith("best")]
    else:
        found = [f for f in files if _step_of(f) == spec.number]
    if len(found) != 1:
        what = "no" if not found else "several"
        raise ConfigError(
            f"{key}: got {spec.text!r}; {what} {spec.which} checkpoint in {str(folder)!r} "
            f"(files: {names[:8]}); name the file itself"
        )
    return found[0]


def _step_of(file: Path) -> int | None:
    match = _STEP_IN_NAME.search(file.stem)
    if match:
        return int(match.group(1))
    loaded = read_file(file, "checkpoint")
    step = loaded.get("global_step") if isinstance(loaded, Mapping) else None
    return int(step) if isinstance(step, int) else None


def load_state(spec: PointSpec | str, key: str = "weights") -> dict[str, Tensor]:
    """Return the state dict (CPU tensors) of a file or run-directory spec.

    Accepts a Lightning checkpoint (its ``state_dict``), a dict with a ``state_dict`` entry, or
    a plain state dict, read with ``torch.load(weights_only=True)``.

    Args:
        spec: a spec of kind ``file`` or ``run`` (or its text).
        key: the argument name for error messages.

    Returns:
        The state dict.

    Raises:
        ConfigError: when the file is missing, unreadable or holds no state dict of tensors.
    """
    spec = parse_spec(spec, key, check_files=False)
    file = checkpoint_path(spec, key)
    loaded = read_file(file, key)
    state = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(
            f"{key}: {str(file)!r} holds no state dict of tensors (top-level keys: "
            f"{sorted(loaded)[:8] if isinstance(loaded, Mapping) else type(loaded).__name__})"
        )
    return dict(state)


def load_point(
    spec: PointSpec | str,
    like_params: Params,
    like_buffers: Params | None = None,
    key: str = "weights",
) -> tuple[Params, Params]:
    """Load the parameters and buffers named like ``like_params`` / ``like_buffers`` from a file.

    Keys may differ from the model's by one prefix on either side (``net.``, ``model.``,
    ``module.``, ``_orig_mod.`` of ``torch.compile``); values are moved to the device and dtype
    of the reference tensors.

    Args:
        spec: a file or run-directory spec (see `parse_spec`), or its text.
        like_params: the reference trainable parameters (keys, shapes, device, dtype).
        like_buffers: the reference buffers (BatchNorm statistics); None or empty: none.
        key: the argument the spec came from, for error messages.

    Returns:
        ``(params, buffers)`` with the keys and shapes of the references.

    Raises:
        ConfigError: when the file does not fit the model (the first key and both shapes).
    """
    spec = parse_spec(spec, key, check_files=False)
    state = load_state(spec, key)
    like = {**(like_buffers or {}), **like_params}
    where = f"{key} ({checkpoint_path(spec, key)})"
    matched = as_params(match_keys(state, like, key=where), like)
    params = {k: matched[k] for k in like_params}
    buffers = {k: matched[k] for k in like_buffers or {}}
    return params, buffers


def match_keys(state: Mapping[str, Tensor], like: Params, key: str = "weights") -> Params:
    """Return the entries of ``state`` for the keys of ``like``, allowing one key prefix.

    Args:
        state: a state dict, e.g. from a file.
        like: the reference tensors.
        key: name for error messages.

    Returns:
        ``{k: state[...]}`` for every key ``k`` of ``like`` (not yet moved or cast).

    Raises:
        ConfigError: when no single prefix maps every key, or a shape differs.
    """
    state = {k.replace("_orig_mod.", ""): v for k, v in state.items()}
    first = next(iter(like))
    candidates: list[tuple[str, str]] = [("", "")]  # (strip from like, add to state)
    for s in state:
        if s.endswith(first) and (s == first or s[-len(first) - 1] == "."):
            candidates.append(("", s[: len(s) - len(first)]))
        if first.endswith(s) and first != s and first[-len(s) - 1] == ".":
            candidates.append((first[: len(first) - len(s)], ""))
    for strip, add in dict.fromkeys(candidates):
        names = {k: add + k[len(strip) :] for k in like}
        if all(k.startswith(strip) for k in like) and all(n in state for n in names.values()):
            out = {k: state[n] for k, n in names.items()}
            for k, v in out.items():
                if tuple(v.shape) != tuple(like[k].shape):
                    raise ConfigError(
                        f"{key}: entry {names[k]!r} has shape {tuple(v.shape)}; the model's "
                        f"{k!r} has shape {tuple(like[k].shape)}"
                    )
            return out
    missing = [k for k in like if k not in state][:4]
    raise ConfigError(
        f"{key}: the keys do not fit the model (model keys such as {missing}, file keys such as "
        f"{list(state)[:4]}); expected the same architecture, keys equal up to one prefix"
    )
