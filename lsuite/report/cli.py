"""The ``lsuite-report`` command: tables, figures and a page for one sweep directory."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lsuite.report.figures import filename, plot_final, plot_training
from lsuite.report.page import Page, table, write_pages
from lsuite.report.runs import Run, find_runs
from lsuite.report.table import (
    MEASUREMENT_COLUMNS,
    hyperparameter_keys,
    measurement_rows,
    notes,
    run_rows,
    shown_metrics,
    swept_keys,
    write_csv,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """Where a report went and what it found.

    Attributes:
        directory: the report's directory.
        runs: the runs read.
        files: every file written (tables, figures, pages).
        notes: runs that did not finish, or have missing or partial records.
    """

    directory: Path
    runs: list[Run]
    files: list[Path]
    notes: list[str]


def report(sweep_dir: Path, out: Path | None = None) -> Report:
    """Read every run of ``sweep_dir`` and write its tables, figures and page.

    Writes ``runs.csv`` (one row per run: status, overridden keys, final values),
    ``measurements.csv`` (one row per run and measurement), ``final_<metric>.png`` (each metric
    at the end of training against each swept key), ``training_<probe>.<field>.png`` (each
    probe field over training, one line per run), ``README.md`` and ``index.html``.

    Args:
        sweep_dir: a multirun directory (or a single run's directory).
        out: where to write; ``<sweep_dir>/report`` when None.

    Returns:
        What was written and found.

    Raises:
        FileNotFoundError: when ``sweep_dir`` holds no runs.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"SWEEP_DIR: got {str(sweep_dir)!r}; it is not a directory")
    runs = find_runs(sweep_dir)
    if not runs:
        raise FileNotFoundError(
            f"SWEEP_DIR: found no runs in {sweep_dir}; expected job directories with .hydra/, "
            "config.yaml or status.json (the hydra.sweep.dir of an lsuite-train -m sweep)"
        )
    out = Path(out) if out is not None else sweep_dir / "report"
    swept = swept_keys(runs)
    summary = run_rows(runs)
    files = [
        write_csv(out / "runs.csv", summary),
        write_csv(
            out / "measurements.csv",
            measurement_rows(runs),
            header=["run", "status", *hyperparameter_keys(runs), *MEASUREMENT_COLUMNS],
        ),
    ]
    metrics = shown_metrics(summary)
    final_figures = _figures(
        files, [plot_final(runs, m, swept, out / filename("final", m)) for m in metrics]
    )
    probe_metrics = [m for m in metrics if m.split("/")[0] not in ("train", "val", "test")]
    training_figures = _figures(
        files, [plot_training(runs, m, swept, out / filename("training", m)) for m in probe_metrics]
    )
    found = notes(runs)
    header = ["job", "status", *swept, *metrics]
    fixed = [
        f"{key}={runs[0].hyperparameters.get(key)}"
        for key in hyperparameter_keys(runs)
        if key not in swept
    ]
    page = Page(
        title=sweep_dir.resolve().name,
        source=sweep_dir,
        statuses=[run.status for run in runs],
        swept=swept,
        fixed=fixed,
        header=header,
        rows=table(header, summary),
        notes=found,
        final_figures=final_figures,
        training_figures=training_figures,
    )
    files += write_pages(page, out)
    _remove_stale_figures(out, files)
    return Report(directory=out, runs=runs, files=files, notes=found)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``lsuite-report SWEEP_DIR [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog="lsuite-report",
        description="Tabulate and plot the runs of an lsuite-train sweep (a multirun directory).",
    )
    parser.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="hydra.sweep.dir")
    parser.add_argument("--out", type=Path, default=None, help="default: SWEEP_DIR/report")
    args = parser.parse_args(argv)
    try:
        result = report(args.sweep_dir, args.out)
    except FileNotFoundError as error:
        print(f"lsuite-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    lines = [f"lsuite-report: {len(result.runs)} runs in {args.sweep_dir}"]
    lines += [f"  note: {note}" for note in result.notes]
    lines.append(f"  page:   {result.directory / 'README.md'} (and index.html)")
    lines.append(
        f"  tables: {result.directory / 'runs.csv'}, {result.directory / 'measurements.csv'}"
    )
    figures = [f for f in result.files if f.suffix == ".png"]
    lines.append(f"  figures: {len(figures)} in {result.directory}")
    print("\n".join(lines))


def _remove_stale_figures(directory: Path, written: list[Path]) -> None:
    """Delete figures an earlier report left in ``directory`` that this one did not draw."""
    kept = {path.name for path in written}
    for pattern in ("final_*.png", "training_*.png"):
        for path in directory.glob(pattern):
            if path.name not in kept:
                path.unlink()


def _figures(files: list[Path], written: list[Path | None]) -> list[str]:
    names = []
    for path in written:
        if path is not None:
            files.append(path)
            names.append(path.name)
    return names


if __name__ == "__main__":
    main()
