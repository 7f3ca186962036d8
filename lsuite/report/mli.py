"""Monotonic linear interpolation across a sweep: how often the loss falls from init to solution."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lsuite.probes.interpolation import InterpolationResult
from lsuite.report.correlate import granulation_keys
from lsuite.report.runs import Run, final_record

TOLERANCE = 1e-4
"""A rise counts when larger than this fraction of the loss at ``alpha = 0`` (the init)."""


def largest_bump(alpha: Sequence[float], loss: Sequence[float]) -> float:
    """Return the largest rise ``max(loss(a') - loss(a))`` over ``0 <= a < a' <= 1`` (>= 0).

    Args:
        alpha: ``(N,)`` grid positions (any order; those outside ``[0, 1]`` are ignored).
        loss: ``(N,)`` loss at each position.

    Returns:
        The bump height: 0 for a loss that never rises along ``alpha``; NaN when a loss in
        ``[0, 1]`` is not finite.
    """
    points = sorted((a, v) for a, v in zip(alpha, loss, strict=True) if 0.0 <= a <= 1.0)
    if not all(math.isfinite(v) for _, v in points):
        return math.nan
    bump, lowest = 0.0, math.inf
    for _, value in points:
        bump = max(bump, value - lowest)
        lowest = min(lowest, value)
    return bump


@dataclass(frozen=True)
class MonotonicityOfRun:
    """The init-to-final interpolation of one run.

    Attributes:
        run: the run.
        bump: `largest_bump` of the loss curve.
        start_loss: the loss at ``alpha = 0`` (the initial weights).
        monotonic: ``bump <= tolerance * |start_loss|``.
    """

    run: Run
    bump: float
    start_loss: float
    monotonic: bool


def monotonicity(
    runs: Sequence[Run], split: str = "train", tolerance: float = TOLERANCE
) -> list[MonotonicityOfRun]:
    """Return the init-to-final monotonicity of every run with such an interpolation record.

    Reads the final record (`final_record`) of every probe whose results are
    `InterpolationResult` with ``start == "init"`` (the ``interpolation`` probe's default), on
    ``split``'s loss; the first such probe of a run counts. Runs that are not ``completed`` are
    skipped (their last record is not the end of training).

    Args:
        runs: the sweep's runs.
        split: the loss curve to read (``train``, as Lucas et al. 2021).
        tolerance: a run is monotonic when no rise exceeds ``tolerance`` times the initial loss.

    Returns:
        One entry per run that has the curve, in sweep order.
    """
    out = []
    for run in runs:
        if run.status != "completed":
            continue
        for records in run.records.values():
            last = final_record(records)
            result = None if last is None else last.result
            if not isinstance(result, InterpolationResult) or result.start != "init":
                continue
            if split not in result.loss:
                continue
            loss = result.loss[split]
            start = loss[min(range(len(loss)), key=lambda i: abs(result.alpha[i]))]
            bump = largest_bump(result.alpha, loss)
            monotonic = math.isfinite(bump) and bump <= tolerance * abs(start)
            out.append(MonotonicityOfRun(run, bump, start, monotonic))
            break
    return out


def monotonicity_rows(found: Sequence[MonotonicityOfRun]) -> list[dict[str, Any]]:
    """Return Lucas et al.'s table: the fraction of monotonic runs per value of each swept key.

    One row for all runs (``key`` ``all``), then one per value of each key that varies among
    them (seeds excepted). Columns: ``key``, ``value``, ``runs``, ``monotonic`` (how many),
    ``fraction``, ``mean_bump`` (mean `largest_bump` of the runs that are not monotonic, NaN
    when all are), ``largest_bump`` (over all the row's runs). After Lucas, Bae, Zhang, Fort,
    Zemel, Grosse 2021, "Analyzing Monotonic Linear Interpolation in Neural Network Loss
    Landscapes".

    Args:
        found: `monotonicity`.

    Returns:
        The rows.
    """
    rows = [_row("all", "", found)]
    for key in granulation_keys([entry.run for entry in found]):
        values: dict[str, list[MonotonicityOfRun]] = {}
        for entry in found:
            values.setdefault(repr(entry.run.hyperparameters.get(key)), []).append(entry)
        for group in sorted(values.values(), key=lambda g: _order(g[0].run.hyperparameters[key])):
            rows.append(_row(key, group[0].run.hyperparameters.get(key), group))
    return rows


def _row(key: str, value: Any, group: Sequence[MonotonicityOfRun]) -> dict[str, Any]:
    bumps = [entry.bump for entry in group if not entry.monotonic and math.isfinite(entry.bump)]
    finite = [entry.bump for entry in group if math.isfinite(entry.bump)]
    monotonic = sum(entry.monotonic for entry in group)
    return {
        "key": key,
        "value": value,
        "runs": len(group),
        "monotonic": monotonic,
        "fraction": monotonic / len(group) if group else math.nan,
        "mean_bump": sum(bumps) / len(bumps) if bumps else math.nan,
        "largest_bump": max(finite) if finite else math.nan,
    }


def _order(value: Any) -> tuple[int, float, str]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))
