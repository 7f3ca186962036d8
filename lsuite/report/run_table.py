"""Build the summary's runs table: one row per run, or per configuration averaged over seeds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from lsuite.report.groups import SEED_KEYS, aggregate, group_runs
from lsuite.report.page import Table, format_cell
from lsuite.report.runs import Run
from lsuite.report.table import FINISHED

MAX_METRIC_COLUMNS = 12
"""Most value columns in the summary's table; the others are named in a note (all in runs.csv)."""


def runs_table(
    runs: Sequence[Run],
    swept: Sequence[str],
    metrics: Sequence[str],
    finals: Mapping[str, Mapping[str, float]],
) -> Table:
    """Return one row per run: job, status, swept keys, final values.

    Args:
        runs: the sweep's runs.
        swept: the keys that vary (seed keys included when they vary).
        metrics: the value columns.
        finals: run name -> its final values.
    """
    header = ["job", "status", *swept, *metrics]
    rows, sort = [], []
    for run in runs:
        values: list[Any] = [run.short_name, run.status]
        values += [run.hyperparameters.get(key) for key in swept]
        values += [finals[run.name].get(metric) for metric in metrics]
        rows.append([format_cell(v) for v in values])
        sort.append([_number(v) for v in values])
    return Table(header, rows, sort)


def groups_table(
    runs: Sequence[Run],
    swept: Sequence[str],
    metrics: Sequence[str],
    finals: Mapping[str, Mapping[str, float]],
) -> tuple[Table, list[dict[str, Any]]]:
    """Return one row per configuration (runs differing only in seeds), and its CSV rows.

    A cell is ``mean ± standard error`` over the completed runs of the configuration
    (``std / sqrt(n)``); ``n`` counts them and ``status`` counts every run's status. The CSV
    rows hold ``<metric>``, ``<metric>_se``, ``<metric>_std`` and ``<metric>_n``.

    Args:
        runs: the sweep's runs.
        swept: the keys that vary, seeds left out (the configuration's identity).
        metrics: the value columns.
        finals: run name -> its final values.
    """
    header = [*swept, "runs", "status", *metrics]
    rows, sort, records = [], [], []
    for group in group_runs(runs, swept):
        done = [run for run in group if run.status in FINISHED]
        first = group[0].hyperparameters
        statuses = ", ".join(
            f"{n} {s}" for s, n in sorted(Counter(r.status for r in group).items())
        )
        cells = [format_cell(first.get(key)) for key in swept] + [str(len(group)), statuses]
        numbers: list[float | None] = [_number(first.get(key)) for key in swept]
        numbers += [float(len(group)), None]
        record: dict[str, Any] = {key: first.get(key) for key in swept}
        record |= {"runs": len(group), "status": statuses}
        record["seeds"] = " ".join(
            ",".join(str(r.hyperparameters.get(k)) for k in SEED_KEYS if k in r.hyperparameters)
            for r in group
        )
        for metric in metrics:
            stat = aggregate([v for r in done if (v := finals[r.name].get(metric)) is not None])
            if stat is None:
                cells.append("")
                numbers.append(None)
                continue
            spread = "" if stat.n < 2 else f" ± {stat.se:.2g}"
            cells.append(
                f"{format_cell(stat.mean)}{spread}"
                + (f" (n={stat.n})" if stat.n < len(group) else "")
            )
            numbers.append(stat.mean)
            record |= {metric: stat.mean, f"{metric}_se": stat.se, f"{metric}_std": stat.std}
            record[f"{metric}_n"] = stat.n
        rows.append(cells)
        sort.append(numbers)
        records.append(record)
    return Table(header, rows, sort), records


def limit_columns(metrics: Sequence[str]) -> tuple[list[str], list[str]]:
    """Return the first `MAX_METRIC_COLUMNS` of ``metrics`` and the rest."""
    return list(metrics[:MAX_METRIC_COLUMNS]), list(metrics[MAX_METRIC_COLUMNS:])


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
