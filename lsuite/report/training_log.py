"""Read the metrics a run's CSV logger wrote (``<run_dir>/csv/metrics.csv``) as series by key."""

from __future__ import annotations

import csv
from pathlib import Path

LOG_FILE = Path("csv") / "metrics.csv"
"""Where ``logger=csv`` (``conf/logger/csv.yaml``) writes the metrics, under the run directory."""

Series = list[tuple[int, float]]
"""``(step, value)`` pairs in the order they were logged; ``step`` is the logger's step column."""


def log_path(run_dir: Path) -> Path | None:
    """Return the run's ``csv/metrics.csv`` (or the last ``csv/<version>/metrics.csv``), or None."""
    path = Path(run_dir) / LOG_FILE
    if path.is_file():
        return path
    versions = sorted((Path(run_dir) / LOG_FILE.parent).glob("*/metrics.csv"))
    return versions[-1] if versions else None


def read_training_log(run_dir: Path) -> dict[str, Series]:
    """Return every logged metric of a run as ``key -> [(step, value), ...]``.

    Lightning's CSV logger writes one row per logging call, with empty cells for the keys not
    logged in it; a metric logged both per step and per epoch appears as ``<key>_step`` and
    ``<key>_epoch`` (``train/loss_epoch``: the mean training loss of an epoch, logged at the
    epoch's last step). Cells that are not numbers are skipped.

    Args:
        run_dir: the run's directory.

    Returns:
        The series by key; empty when the run has no CSV log (it was trained without
        ``logger=csv``) or it cannot be read.
    """
    path = log_path(run_dir)
    if path is None:
        return {}
    series: dict[str, Series] = {}
    try:
        with path.open(newline="", encoding="utf-8") as file:
            for row in csv.DictReader(file):
                step = _number(row.get("step"))
                if step is None:
                    continue
                for key, text in row.items():
                    value = _number(text)
                    if key not in ("step", "epoch") and key is not None and value is not None:
                        series.setdefault(key, []).append((int(step), value))
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    return series


def final_log_values(series: dict[str, Series]) -> dict[str, float]:
    """Return the last logged value of every key; ``<key>_epoch``'s also as ``<key>``.

    So ``train/loss`` is the last epoch's mean training loss and ``train/acc`` the last
    epoch's training accuracy (accumulated while the weights moved during that epoch).

    Args:
        series: `read_training_log`.

    Returns:
        ``key -> value``.
    """
    out = {key: values[-1][1] for key, values in series.items() if values}
    for key, value in list(out.items()):
        if key.endswith("_epoch"):
            out.setdefault(key.removesuffix("_epoch"), value)
    return out


def epoch_series(series: dict[str, Series], key: str) -> Series:
    """Return the per-epoch series of ``key`` (``<key>_epoch`` when logged so, else ``key``)."""
    return series.get(f"{key}_epoch") or series.get(key) or []


def _number(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return None
