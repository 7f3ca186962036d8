"""Group a sweep's runs over seeds and pick its axes: which keys vary, which one goes on x."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lsuite.report.runs import Run, Value

SEED_KEYS = ("seed", "init_seed", "data_seed")
"""Keys whose runs are repeats of one configuration: they are averaged over, never plotted."""


@dataclass(frozen=True)
class Stat:
    """A value over the runs of one group.

    Attributes:
        mean: the mean over runs.
        se: its standard error: ``std / sqrt(n)`` over the runs when ``n >= 2``; with one run
            the probe's own recorded standard error when there is one, else NaN.
        std: the spread over runs (sample standard deviation, ``ddof=1``); NaN for one run.
        n: the number of runs with a finite value.
    """

    mean: float
    se: float
    std: float
    n: int


def aggregate(values: Sequence[float], stderrs: Sequence[float | None] = ()) -> Stat | None:
    """Return the mean, standard error and spread of ``values`` (non-finite ones left out).

    Over several seeds the spread between runs already contains the probe's estimation noise,
    so the probe's ``stderrs`` are used only for a single run.

    Args:
        values: one value per run.
        stderrs: the probe's recorded standard error of each value (None: not recorded).

    Returns:
        The statistic, or None when no value is finite.
    """
    pairs = [
        (v, stderrs[i] if i < len(stderrs) else None)
        for i, v in enumerate(values)
        if v is not None and math.isfinite(v)
    ]
    if not pairs:
        return None
    n = len(pairs)
    mean = sum(v for v, _ in pairs) / n
    if n >= 2:
        std = math.sqrt(sum((v - mean) ** 2 for v, _ in pairs) / (n - 1))
        return Stat(mean, std / math.sqrt(n), std, n)
    own = pairs[0][1]
    se = own if own is not None and math.isfinite(own) else math.nan
    return Stat(mean, se, math.nan, 1)


def axes(runs: Sequence[Run]) -> list[str]:
    """Return the overridden keys whose value differs between ``runs``, seeds left out."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.hyperparameters))
    return [
        key
        for key in keys
        if key not in SEED_KEYS and len({repr(r.hyperparameters.get(key)) for r in runs}) > 1
    ]


def seed_keys(runs: Sequence[Run]) -> list[str]:
    """Return the seed keys (`SEED_KEYS`) whose value differs between ``runs``."""
    return [key for key in SEED_KEYS if len({repr(r.hyperparameters.get(key)) for r in runs}) > 1]


def group_runs(runs: Sequence[Run], keys: Sequence[str]) -> list[list[Run]]:
    """Return ``runs`` grouped by their values of ``keys`` (runs differing only in seeds).

    Groups come in the order of their first run; the runs of a group keep their order.
    """
    groups: dict[tuple[str, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(identity(run, keys), []).append(run)
    return list(groups.values())


def identity(run: Run, keys: Sequence[str]) -> tuple[str, ...]:
    """Return what tells ``run``'s group apart: the repr of its value of each key."""
    return tuple(repr(run.hyperparameters.get(key)) for key in keys)


def has_seeds(runs: Sequence[Run], keys: Sequence[str]) -> bool:
    """Whether some configuration (values of ``keys``) was run with several seeds."""
    return bool(seed_keys(runs)) and any(len(g) > 1 for g in group_runs(runs, keys))


def is_categorical(values: Sequence[Value]) -> bool:
    """Whether ``values`` are categories (any text, boolean or None), not numbers on an axis."""
    return any(not is_number(v) for v in values)


def is_number(value: Value) -> bool:
    """Whether ``value`` is a finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def sort_key(value: Value) -> tuple[int, float, str]:
    """Order numbers by value, before any text."""
    if is_number(value):
        return (0, float(value), "")  # type: ignore[arg-type]
    return (1, 0.0, str(value))


def main_key(runs: Sequence[Run], keys: Sequence[str]) -> str | None:
    """Return the most important swept key: the one put on the x axis of the summary figures.

    "Most important" is the key with the most distinct values (the one the sweep spends the most
    runs on); among equals a numeric key comes before a categorical one (a numeric x shows a
    trend), then the order of the command line.

    Args:
        runs: the sweep's runs.
        keys: its swept keys (`axes`).

    Returns:
        The key, or None when nothing was swept.
    """
    if not keys:
        return None

    def rank(item: tuple[int, str]) -> tuple[int, int, int]:
        index, key = item
        values = [r.hyperparameters.get(key) for r in runs]
        distinct = len({repr(v) for v in values})
        return (-distinct, int(is_categorical(values)), index)

    return min(enumerate(keys), key=rank)[1]
