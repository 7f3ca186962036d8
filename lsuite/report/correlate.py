"""Rank measures by Kendall's tau with a target over a sweep's runs, overall and granulated."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from scipy.stats import kendalltau

from lsuite.report.groups import axes
from lsuite.report.optimisation import optimisation_measures
from lsuite.report.runs import Run, Value, final_record, measurements
from lsuite.report.training_log import final_log_values, read_training_log

GAPS = {
    "gap": "train/acc - test/acc",
    "loss_gap": "test/loss - train/loss",
}
"""Targets computed from two metrics (the generalization gap of Jiang et al. is ``gap``)."""

METRIC_STAGES = ("train", "val", "test")
"""Metrics under these prefixes are targets or criteria, never measures."""

_DETAILS = ("num_", "stderr", "residual", "/")
"""Parts of probe field names that describe an estimate (cost, error, per layer), not the model."""

_KEPT = ("num_params",)
"""Fields kept although they look like details: the parameter count is one of Jiang's measures."""


def run_values(run: Run) -> dict[str, float]:
    """Return every number the correlation can use for one run, by name.

    - ``train/*``, ``val/*``, ``test/*``: the run's final metrics from ``status.json`` (the
      test metrics of the tested weights), else the last values of its CSV training log
      (``train/loss``, ``train/acc``: the last epoch's means; see `final_log_values`).
    - ``gap`` = ``train/acc - test/acc`` and ``loss_gap`` = ``test/loss - train/loss``.
    - ``<probe>/<field>``: the probe's final record (`final_record`), as loggers name it.
    - ``optimisation/*``: `optimisation_measures` of the training log.

    Args:
        run: a run of the sweep.

    Returns:
        ``name -> value`` (NaN where a measure is undefined).
    """
    series = read_training_log(run.directory)
    logged = final_log_values(series)
    out = {k: v for k, v in logged.items() if k.split("/")[0] in METRIC_STAGES}
    out.update(run.metrics)
    if "train/acc" in out and "test/acc" in out:
        out["gap"] = out["train/acc"] - out["test/acc"]
    if "train/loss" in out and "test/loss" in out:
        out["loss_gap"] = out["test/loss"] - out["train/loss"]
    for probe, records in run.records.items():
        last = final_record(records)
        if last is not None:
            out.update({f"{probe}/{k}": v for k, v in measurements(last).items()})
    if series:
        out.update(optimisation_measures(series))
    return out


def is_measure(name: str, target: str) -> bool:
    """Return whether ``name`` is a measure to correlate with ``target``.

    Measures are probe fields and optimisation measures; metrics (``train/``, ``val/``,
    ``test/``), the gaps, the target itself and estimator details (``num_*`` but
    ``num_params``, ``*stderr*``, ``*residual*``, per-layer values) are not.
    """
    stage, _, rest = name.partition("/")
    if not rest or stage in METRIC_STAGES or name in GAPS or name == target:
        return False
    return rest in _KEPT or not any(part in rest for part in _DETAILS)


@dataclass(frozen=True)
class Selection:
    """The runs a correlation uses, and those it leaves out with why.

    Attributes:
        used: the runs used, in sweep order.
        values: `run_values` of each used run, in the same order.
        left_out: reason -> names of the runs left out for it.
    """

    used: list[Run]
    values: list[dict[str, float]]
    left_out: dict[str, list[str]] = field(default_factory=dict)


def select_runs(
    runs: Sequence[Run],
    target: str,
    converged_key: str | None,
    converged_below: float | None,
) -> Selection:
    """Keep the completed runs that have ``target`` and reached the convergence criterion.

    A run is left out when its status is not ``completed``, when ``target`` is missing or not
    finite, or (with a criterion) when ``converged_key`` is missing or not below
    ``converged_below``.

    Args:
        runs: the sweep's runs.
        target: the value measures are correlated with (a `run_values` name).
        converged_key: the criterion's value (a `run_values` name, e.g. ``train/loss``); None:
            no criterion.
        converged_below: the level ``converged_key`` must be strictly below; None: none.

    Returns:
        The selection.
    """
    used, values = [], []
    left_out: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        found = run_values(run)
        reason = _left_out(run, found, target, converged_key, converged_below)
        if reason is None:
            used.append(run)
            values.append(found)
        else:
            left_out[reason].append(run.name)
    return Selection(used=used, values=values, left_out=dict(left_out))


def _left_out(
    run: Run,
    found: dict[str, float],
    target: str,
    converged_key: str | None,
    converged_below: float | None,
) -> str | None:
    """Return why ``run`` is left out, or None when it is used."""
    if run.status != "completed":
        return f"status {run.status}"
    if not math.isfinite(found.get(target, math.nan)):
        return f"no {target}"
    if converged_key is None or converged_below is None:
        return None
    value = found.get(converged_key, math.nan)
    if math.isnan(value):
        return f"no {converged_key}"
    return None if value < converged_below else f"{converged_key} >= {converged_below:g}"


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> tuple[float, int]:
    """Return Kendall's tau-b of ``x`` and ``y`` over the pairs where neither is NaN.

    Infinities are kept: they are ordered like any value (a flatness ``1 / alpha^2`` of a run
    whose scale ``alpha`` is 0 is the largest), so tau of a measure and of any monotone
    transform of it agree.

    Without ties, tau-b is the tau of Jiang et al. (2020): the mean of
    ``sign(x_i - x_j) * sign(y_i - y_j)`` over all pairs ``i != j``. ``scipy.stats.kendalltau``
    computes it.

    Args:
        x: ``(N,)`` values of a measure.
        y: ``(N,)`` values of the target.

    Returns:
        ``(tau, n)``: tau is NaN when fewer than 2 pairs remain or either side is constant;
        ``n`` is the number of pairs used.
    """
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if not (math.isnan(a) or math.isnan(b))]
    if len(pairs) < 2 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return math.nan, len(pairs)
    a, b = zip(*pairs, strict=True)
    return float(kendalltau(a, b).statistic), len(pairs)


@dataclass(frozen=True)
class Granulated:
    """Jiang et al.'s granulated Kendall coefficient of one measure.

    Attributes:
        psi: the mean of ``per_key`` over the keys where it is defined (NaN if none is).
        per_key: key -> the mean, over groups of runs that agree on every other swept key,
            of tau within the group (NaN when no group has a defined tau).
        groups: key -> the number of groups behind ``per_key[key]``.
        runs: the number of runs in at least one such group.
    """

    psi: float
    per_key: dict[str, float]
    groups: dict[str, int]
    runs: int


def granulated_tau(
    x: Sequence[float], y: Sequence[float], settings: Sequence[dict[str, Value]], keys: list[str]
) -> Granulated:
    """Return the granulated tau: for each key, tau with only that key varied, averaged.

    ``psi = mean_i m_i``, ``m_i = mean over the values of the other keys of tau(x, y)`` over
    the runs that share those values (Jiang, Neyshabur, Mobahi, Krishnan, Bengio 2020,
    "Fantastic Generalization Measures and Where to Find Them", eq. 4). Groups whose tau is
    undefined (fewer than 2 pairs without NaN, a constant side) are skipped, so a sweep with runs
    left out uses the groups that remain.

    Args:
        x: ``(N,)`` values of a measure.
        y: ``(N,)`` values of the target.
        settings: ``(N,)`` each run's hyperparameters (key -> value).
        keys: the swept hyperparameters.

    Returns:
        The coefficient, per key, and the groups and runs behind it.
    """
    per_key, groups, members = {}, {}, set()
    for key in keys:
        found: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for index, setting in enumerate(settings):
            found[tuple(repr(setting.get(k)) for k in keys if k != key)].append(index)
        taus = []
        for indices in found.values():
            tau, _ = kendall_tau([x[i] for i in indices], [y[i] for i in indices])
            if not math.isnan(tau):
                taus.append(tau)
                members.update(i for i in indices if not math.isnan(x[i] + y[i]))
        per_key[key] = sum(taus) / len(taus) if taus else math.nan
        groups[key] = len(taus)
    defined = [v for v in per_key.values() if not math.isnan(v)]
    psi = sum(defined) / len(defined) if defined else math.nan
    return Granulated(psi=psi, per_key=per_key, groups=groups, runs=len(members))


@dataclass(frozen=True)
class Correlation:
    """One measure's rank correlation with the target.

    Attributes:
        measure: the measure's name (``<probe>/<field>`` or ``optimisation/...``).
        tau: Kendall's tau over the runs (`kendall_tau`).
        runs: the runs behind ``tau``.
        granulated: the granulated coefficient (`granulated_tau`).
    """

    measure: str
    tau: float
    runs: int
    granulated: Granulated


def granulation_keys(runs: Sequence[Run]) -> list[str]:
    """Return the keys to granulate over: the swept keys of ``runs``, seeds excepted."""
    return axes(runs)


def correlate(selection: Selection, target: str) -> tuple[list[Correlation], list[str]]:
    """Correlate every measure of the selected runs with ``target``, strongest first.

    Ranked by ``|tau|`` (NaN last), then by name.

    Args:
        selection: `select_runs`.
        target: the target's name.

    Returns:
        ``(correlations, constant)``: one entry per measure that varies over the runs, and the
        names of the measures left out because they are equal (or undefined) in every run.
    """
    names: dict[str, None] = {}
    for values in selection.values:
        names.update(dict.fromkeys(k for k in values if is_measure(k, target)))
    y = [values[target] for values in selection.values]
    settings = [run.hyperparameters for run in selection.used]
    keys = granulation_keys(selection.used)
    out, constant = [], []
    for name in names:
        x = [values.get(name, math.nan) for values in selection.values]
        if len({v for v in x if not math.isnan(v)}) < 2:
            constant.append(name)
            continue
        tau, n = kendall_tau(x, y)
        out.append(Correlation(name, tau, n, granulated_tau(x, y, settings, keys)))
    out.sort(
        key=lambda c: (math.isnan(c.tau), 0.0 if math.isnan(c.tau) else -abs(c.tau), c.measure)
    )
    return out, constant
