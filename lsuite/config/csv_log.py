"""A CSV logger that continues its ``metrics.csv`` when a run resumes, instead of deleting it.

Lightning's `CSVLogger` removes an existing ``metrics.csv`` when it starts (with a warning), so a
resumed run (``resume=auto``, same run directory) kept only the metrics logged after the resume,
and ``lsuite-report`` read a training log without its first epochs.
"""

from __future__ import annotations

import csv
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from typing_extensions import override

PROBE_PREFIX = "probe/"
"""`ProbeCallback`'s scalars; its records are kept on resume and their steps not measured again."""


class ContinuingWriter(ExperimentWriter):
    """Lightning's CSV experiment writer, keeping the rows a run's earlier part wrote.

    At its first save the rows already in ``metrics.csv`` whose ``step`` is at or after the
    first step logged now are dropped (an interrupted run's steps after its last checkpoint,
    which the resumed run logs again; a fresh run from step 0 drops them all, as Lightning does),
    except rows of probe scalars only (``probe/...``: the probes keep their records and do not
    measure those steps again), and the new rows are appended under the union of both headers.
    """

    @override
    def _check_log_dir_exists(self) -> None:
        """Keep an existing ``metrics.csv`` (Lightning's writer deletes it here)."""
        self._kept: list[dict[str, str]] | None = None
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self._kept = list(csv.DictReader(file))

    @override
    def save(self) -> None:
        """Write the recorded metrics: the kept rows before the first new step, then the new."""
        if self.metrics and self._kept is not None:
            first = min(float(row["step"]) for row in self.metrics)
            kept = [row for row in self._kept if _step(row) < first or _is_probe_row(row)]
            self._kept = None
            keys = sorted({key for row in kept for key in row} | set().union(*self.metrics))
            with self._fs.open(self.metrics_file_path, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=keys)
                writer.writeheader()
                writer.writerows(kept)
            self.metrics_keys = keys
        super().save()


def _is_probe_row(row: dict[str, Any]) -> bool:
    """Whether a row holds probe scalars only: a resumed run never logs those again."""
    keys = [k for k, v in row.items() if v not in ("", None) and k != "step"]
    return bool(keys) and all(k.startswith(PROBE_PREFIX) for k in keys)


def _step(row: dict[str, Any]) -> float:
    try:
        return float(row.get("step", ""))
    except ValueError:
        return float("-inf")  # a row without a step stays


class ContinuingCSVLogger(CSVLogger):
    """`CSVLogger` whose ``metrics.csv`` survives a resume (`ContinuingWriter`)."""

    @property
    @override
    @rank_zero_experiment
    def experiment(self) -> ContinuingWriter:
        """The writer, made on first use."""
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = ContinuingWriter(log_dir=self.log_dir)
        return self._experiment


__all__ = ["ContinuingCSVLogger", "ContinuingWriter"]
