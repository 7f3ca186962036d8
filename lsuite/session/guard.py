"""Guard the training state a probe must leave untouched: capture, restore and compare it."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

CHECK_ENV = "LSUITE_CHECK_PROBES"
"""Set to ``1`` to compare the full training state before and after every probe (tests do)."""


def capture_rng() -> dict[str, Any]:
    """Return the torch (CPU and initialised CUDA), numpy and python RNG states."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore the RNG states captured by `capture_rng`."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def training_fingerprint(module: nn.Module, optimizers: Sequence[Optimizer] = ()) -> dict[str, Any]:
    """Return copies of everything a probe must not change.

    Args:
        module: the model being trained.
        optimizers: its optimizers.

    Returns:
        Parameters, buffers, gradients, ``requires_grad`` flags, train/eval flags of every
        submodule, optimizer state tensors and hyperparameters, and every RNG state.
    """
    out: dict[str, Any] = {}
    for name, p in module.named_parameters():
        out[f"param:{name}"] = p.detach().clone()
        out[f"grad:{name}"] = None if p.grad is None else p.grad.detach().clone()
        out[f"requires_grad:{name}"] = p.requires_grad
    for name, b in module.named_buffers():
        out[f"buffer:{name}"] = b.detach().clone()
    for name, m in module.named_modules():
        out[f"training:{name}"] = m.training
    for i, opt in enumerate(optimizers):
        for j, (key, value) in enumerate(_flatten(opt.state_dict())):
            out[f"optimizer{i}:{j}:{key}"] = value.clone() if isinstance(value, Tensor) else value
    rng = capture_rng()
    out["rng:torch"] = rng["torch"]
    out["rng:numpy"] = (rng["numpy"][0], rng["numpy"][1].copy(), *rng["numpy"][2:])
    out["rng:python"] = rng["python"]
    if "cuda" in rng:
        out["rng:cuda"] = rng["cuda"]
    return out


def fingerprint_differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Return the keys whose values differ bit for bit between two fingerprints."""
    keys = sorted(set(before) | set(after))
    return [k for k in keys if k not in before or k not in after or not _same(before[k], after[k])]


@contextmanager
def preserved_training_state(
    module: nn.Module, optimizers: Sequence[Optimizer] = (), *, check: bool = False
) -> Iterator[None]:
    """Restore RNG states, module modes, gradients and ``requires_grad`` flags on exit.

    Args:
        module: the model being trained.
        optimizers: its optimizers (compared when ``check`` is set).
        check: also compare a full fingerprint before and after, raising on any difference.

    Yields:
        Nothing; the body runs the probe.

    Raises:
        RuntimeError: with ``check``, when the body changed weights, buffers, optimizer state,
            or anything else the restore does not cover.
    """
    before = training_fingerprint(module, optimizers) if check else None
    rng = capture_rng()
    modes = [(m, m.training) for m in module.modules()]
    params = [(p, p.grad, p.requires_grad) for p in module.parameters()]
    try:
        yield
    finally:
        restore_rng(rng)
        for m, training in modes:
            m.training = training
        for p, grad, requires_grad in params:
            p.grad = grad
            p.requires_grad_(requires_grad)
    if before is not None:
        differences = fingerprint_differences(before, training_fingerprint(module, optimizers))
        if differences:
            raise RuntimeError(f"a probe changed the training state: {differences[:10]}")


def _flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _flatten(v, f"{prefix}/{i}")
    else:
        yield prefix, obj


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (
            isinstance(a, Tensor)
            and isinstance(b, Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(torch.equal(a, b))
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
