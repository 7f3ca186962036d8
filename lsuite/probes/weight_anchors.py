"""Resolve named points in weight space: observed weights (init, epoch, step) and weight files.

A spec names one weight vector:

- ``"init"``: the weights at the start of training (observed at step 0);
- ``"epoch:N"``: the weights at the end of epoch ``N`` (0-based, Lightning's ``current_epoch``);
- ``"step:N"``: the weights observed at global step ``N`` (observations happen at fit start and
  at every epoch end, so ``N`` must be one of those steps);
- ``"middle"``: the observation half way through the ones kept so far;
- ``"current"`` (or ``"final"``): the point being measured (the final weights when measured at
  the end of fit);
- anything else: a file, a Lightning ``.ckpt`` (its ``state_dict``) or a saved state dict, whose
  keys may carry a prefix (``net.``, ``model.``, ``module.``) that is matched to the point's keys.

A keyword anchor passed to `Probe.measure` / ``run`` under the spec's name (``start=``,
``init=``) takes precedence over observed weights, which is how the probes work outside training.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from lsuite.errors import ConfigError
from lsuite.functional.params import Params
from lsuite.probes.base import Probe
from lsuite.probes.point import as_params

Keep = Literal["none", "init", "all"]

_OBSERVED = re.compile(r"^(epoch|step):(\d+)$")


@dataclasses.dataclass(frozen=True)
class Observation:
    """Weights seen during training (on the CPU).

    Attributes:
        step: the trainer's global step.
        epoch: the epoch (for step 0: the epoch training starts in).
        params: detached CPU copies of the trainable parameters.
    """

    step: int
    epoch: int
    params: Params


def check_spec(spec: object, key: str) -> str:
    """Return ``spec`` when it is a valid weight spec (see the module doc).

    Args:
        spec: the value to check.
        key: the argument name for the error message.

    Returns:
        The spec.

    Raises:
        ConfigError: when ``spec`` is not a non-empty string.
    """
    if not isinstance(spec, str) or not spec:
        raise ConfigError(
            f"{key}: got {spec!r}; expected 'init', 'middle', 'current', 'final', 'epoch:N', "
            "'step:N' or the path of a checkpoint / state-dict file"
        )
    if spec.startswith(("epoch:", "step:")) and not _OBSERVED.match(spec):
        raise ConfigError(f"{key}: got {spec!r}; expected 'epoch:N' or 'step:N' with N an int >= 0")
    return spec


def is_observed(spec: str) -> bool:
    """Return True when ``spec`` refers to weights seen during training."""
    return spec in ("init", "middle") or bool(_OBSERVED.match(spec))


class WeightHistory:
    """Weights observed during training that a probe may need later.

    Args:
        specs: the specs the probe will resolve; decides what is kept.
        keep_all: keep every observation (trajectory and ``"middle"`` need them all).
    """

    def __init__(self, specs: Iterable[str] = (), keep_all: bool = False) -> None:
        self.specs = tuple(specs)
        self.keep_all = keep_all or "middle" in self.specs
        self.observations: list[Observation] = []

    def observe(self, params: Mapping[str, Tensor], *, step: int, epoch: int) -> None:
        """Keep a CPU copy of ``params`` when a spec (or the trajectory) may need it.

        Args:
            params: the trainable parameters.
            step: the trainer's global step.
            epoch: the current epoch.
        """
        if not (self.keep_all or any(self._matches(s, step, epoch) for s in self.specs)):
            return
        kept = {k: v.detach().to("cpu", copy=True) for k, v in params.items()}
        self.observations = [o for o in self.observations if o.step != step or step == 0]
        self.observations.append(Observation(step=step, epoch=epoch, params=kept))

    def resolve(
        self, spec: str, current: Params, anchors: Mapping[str, Params], key: str
    ) -> Params:
        """Return the weights named by ``spec``, on the device and dtype of ``current``.

        Args:
            spec: a weight spec (see the module doc).
            current: the parameters of the point being measured.
            anchors: keyword anchors given to the probe, by name; one named ``spec`` wins.
            key: the argument the spec came from, for error messages.

        Returns:
            Parameters with the keys and shapes of ``current``.

        Raises:
            ConfigError: when the weights were not observed (yet) or the file does not fit.
        """
        if spec in anchors:
            return as_params(anchors[spec], current)
        if spec in ("current", "final"):
            return current
        if is_observed(spec):
            found = self._find(spec)
            if found is None:
                seen = [(o.step, o.epoch) for o in self.observations]
                raise ConfigError(
                    f"{key}: {spec!r} has not been observed (kept (step, epoch): {seen}); run the "
                    f"probe inside ProbeCallback after that point (e.g. on_fit_end), or pass "
                    f"{spec.split(':')[0]}=weights to measure()"
                )
            return as_params(found.params, current)
        return load_weights(spec, current, key)

    def state_dict(self) -> dict[str, Any]:
        """Return the kept observations (CPU tensors) for a checkpoint."""
        return {
            "observations": [
                {"step": o.step, "epoch": o.epoch, "params": dict(o.params)}
                for o in self.observations
            ]
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore observations saved by `state_dict`."""
        self.observations = [
            Observation(step=int(o["step"]), epoch=int(o["epoch"]), params=dict(o["params"]))
            for o in state.get("observations", [])
        ]

    def _find(self, spec: str) -> Observation | None:
        if spec == "middle":
            return self.observations[len(self.observations) // 2] if self.observations else None
        matches = [o for o in self.observations if self._matches(spec, o.step, o.epoch)]
        return matches[-1] if matches else None

    @staticmethod
    def _matches(spec: str, step: int, epoch: int) -> bool:
        if spec == "init":
            return step == 0
        match = _OBSERVED.match(spec)
        if match is None:
            return False
        number = int(match.group(2))
        if match.group(1) == "step":
            return step == number
        return epoch == number and step > 0


def load_weights(path: str | Path, like: Params, key: str = "weights") -> Params:
    """Load the parameters named like ``like`` from a checkpoint or state-dict file.

    Accepts a Lightning checkpoint (its ``state_dict``), a dict with a ``state_dict`` entry, or a
    plain state dict. Keys may differ from those of ``like`` by one prefix on either side
    (``net.``, ``model.``, ``module.``, ``_orig_mod.`` of ``torch.compile``). The file is read with
    ``torch.load(weights_only=True)``.

    Args:
        path: the file.
        like: the reference parameters (keys, shapes, device, dtype).
        key: the argument the path came from, for error messages.

    Returns:
        Parameters with the keys and shapes of ``like``.

    Raises:
        ConfigError: when the file is missing, unreadable, or its keys or shapes do not fit.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"{key}: got {str(path)!r}; expected 'init', 'middle', 'current', 'epoch:N', "
            "'step:N' or an existing checkpoint / state-dict file"
        )
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ConfigError(
            f"{key}: cannot read {str(path)!r} with torch.load(weights_only=True) ({error}); save "
            "the weights with torch.save(model.state_dict(), path)"
        ) from error
    state = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(
            f"{key}: {str(path)!r} holds no state dict of tensors (top-level keys: "
            f"{sorted(loaded)[:8] if isinstance(loaded, Mapping) else type(loaded).__name__})"
        )
    return as_params(match_keys(state, like, key=f"{key} ({path})"), like)


def match_keys(state: Mapping[str, Tensor], like: Params, key: str = "weights") -> Params:
    """Return the entries of ``state`` for the keys of ``like``, allowing one key prefix.

    Args:
        state: a state dict, e.g. from a file.
        like: the reference parameters.
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


def check_anchors(anchors: Mapping[str, Any], allowed: Iterable[str], probe: str) -> None:
    """Raise when a keyword anchor is not one the probe uses (a typo would be ignored otherwise).

    Args:
        anchors: the keyword anchors given.
        allowed: the names the probe accepts.
        probe: the probe's name, for the message.

    Raises:
        ConfigError: for an unknown anchor name.
    """
    allowed = sorted(set(allowed))
    unknown = sorted(set(anchors) - set(allowed))
    if unknown:
        raise ConfigError(f"{probe}: got anchors {unknown}; expected some of {allowed}")


class WeightHistoryProbe(Probe):
    """A probe that keeps weights seen during training (``self.history``) and checkpoints them.

    Subclasses set ``self.history`` to a `WeightHistory` of the weight specs they need.
    """

    history: WeightHistory

    def observe(self, params: Params, *, step: int, epoch: int) -> None:
        """Keep the weights the probe's specs name (e.g. at step 0 for ``"init"``).

        Args:
            params: detached copies of the trainable parameters.
            step: the trainer's global step.
            epoch: the current epoch.
        """
        self.history.observe(params, step=step, epoch=epoch)

    def state_dict(self) -> dict[str, Any]:
        """Return the kept weights (CPU tensors)."""
        return self.history.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the weights saved by `state_dict`."""
        self.history.load_state_dict(state)
