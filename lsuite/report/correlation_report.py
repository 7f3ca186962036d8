"""Write a sweep's correlation and monotonicity tables (CSV, Markdown) and the correlation plot."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lsuite.errors import ConfigError
from lsuite.plots.curves import save_figure
from lsuite.report.correlate import (
    Correlation,
    correlate,
    granulation_keys,
    run_values,
    select_runs,
)
from lsuite.report.mli import TOLERANCE, monotonicity, monotonicity_rows
from lsuite.report.page import Section, Table, Written
from lsuite.report.page import table as table_cells
from lsuite.report.runs import Run
from lsuite.report.table import write_csv
from lsuite.results.jsonl import write_atomic

CONVERGED_KEY = "train/loss"
CONVERGED_BELOW = 0.01
"""Default criterion: the last epoch's mean training cross-entropy below 0.01 (Jiang et al.)."""
SUMMARY_ROWS = 15
"""Measures the summary page shows (the strongest by |tau|); the Markdown and CSV have all."""


def write_correlation(
    runs: Sequence[Run],
    out: Path,
    target: str,
    converged_key: str | None = CONVERGED_KEY,
    converged_below: float | None = CONVERGED_BELOW,
) -> Written:
    """Write ``correlation_<target>.{csv,md,png}``: every measure's tau with ``target``, ranked.

    Columns: ``measure``, ``tau`` and ``runs`` (Kendall's tau-b over the runs where both are
    finite), ``psi`` (granulated tau), ``psi_runs``, then ``tau_<key>`` and ``groups_<key>``
    per swept key (the mean tau with only that key varied, and its number of groups).

    Args:
        runs: the sweep's runs.
        out: the report directory.
        target: `run_values` name: ``gap``, ``loss_gap``, ``test/acc``, a probe field...
        converged_key: the convergence criterion's value; None: every completed run is used.
        converged_below: the level it must be below.

    Returns:
        The files and the lines to print.

    Raises:
        ConfigError: when no run has ``target``.
    """
    available = sorted({name for run in runs for name in run_values(run)})
    if target not in available:
        raise ConfigError(
            f"--correlate: got {target!r}, which no run has; expected one of {', '.join(available)}"
        )
    selection = select_runs(runs, target, converged_key, converged_below)
    correlations, constant = correlate(selection, target)
    keys = granulation_keys(selection.used)
    rows = [_row(c, keys) for c in correlations]
    stem = "correlation_" + "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in target)
    criterion = (
        f"{converged_key} < {converged_below:g}"
        if converged_key is not None and converged_below is not None
        else "none"
    )
    title = (
        f"correlation with {target}: {len(selection.used)} of {len(runs)} runs used "
        f"(convergence criterion: {criterion}; granulated over: {', '.join(keys) or 'none'})"
    )
    notes = [
        f"left out, {why}: {len(names)} ({', '.join(names)})"
        for why, names in selection.left_out.items()
    ]
    if len(selection.used) < 2:
        notes.append("fewer than 2 runs used: nothing to rank")
    elif constant:
        notes.append(f"not ranked (equal or undefined in every run): {', '.join(constant)}")
    header = ["measure", "tau", "runs", "psi", "psi_runs", *(f"tau_{key}" for key in keys)]
    table = _markdown(header, [[r[h] for h in header] for r in rows])
    markdown = [f"# {title}", "", *(f"- {note}" for note in notes), "", *table, ""]
    files = [
        write_csv(out / f"{stem}.csv", rows, header=header),
        write_atomic(out / f"{stem}.md", "\n".join(markdown)),
    ]
    if correlations:
        files.append(plot_correlation(correlations, target, out / f"{stem}.png"))
    else:
        (out / f"{stem}.png").unlink(missing_ok=True)  # an earlier report's, now stale
    lines = [title, *(f"  {note}" for note in notes), *table, f"  tables: {files[0]}, {files[1]}"]
    shown = rows[:SUMMARY_ROWS]
    section = Section(
        f"Correlation with {target}",
        [
            f"{title[0].upper()}{title[1:]}. The {len(shown)} strongest of {len(rows)} "
            f"measures by |tau|; every measure and the tau per swept key: "
            f"[{stem}.md]({stem}.md), `{stem}.csv`.",
        ],
        items=[
            f"left out, {why}: {len(names)} runs (named in `{stem}.md`)"
            for why, names in selection.left_out.items()
        ],
        table=Table(header[:5], table_cells(header[:5], shown)) if shown else None,
        figures=[f"{stem}.png"] if correlations else [],
    )
    return Written(files=files, lines=lines, sections=[section])


def write_monotonicity(
    runs: Sequence[Run], out: Path, split: str = "train", tolerance: float = TOLERANCE
) -> Written:
    """Write ``mli.{csv,md}``: the fraction of runs whose init-to-final loss is monotonic.

    Nothing is written when no run has an init-to-final interpolation record.

    Args:
        runs: the sweep's runs.
        out: the report directory.
        split: the loss curve read.
        tolerance: a rise counts when above ``tolerance`` times the initial loss.

    Returns:
        The files and the lines to print.
    """
    found = monotonicity(runs, split, tolerance)
    if not found:
        return Written(files=[], lines=[])
    rows = monotonicity_rows(found)
    header = ["key", "value", "runs", "monotonic", "fraction", "mean_bump", "largest_bump"]
    title = (
        f"monotonic linear interpolation (init to final, {split} loss; monotonic: no rise above "
        f"{tolerance:g} x the initial loss): {rows[0]['monotonic']} of {len(found)} runs"
    )
    table = _markdown(header, [[r[h] for h in header] for r in rows])
    files = [
        write_csv(out / "mli.csv", rows, header=header),
        write_atomic(out / "mli.md", "\n".join([f"# {title}", "", *table, ""])),
    ]
    section = Section(
        "Monotonic linear interpolation",
        [f"{title[0].upper()}{title[1:]}. Per value of each swept key: `mli.csv`."],
        table=Table(header, table_cells(header, rows)),
    )
    lines = [title, *table, f"  tables: {files[0]}, {files[1]}"]
    return Written(files=files, lines=lines, sections=[section])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--correlate``, ``--converged-key``, ``--converged-below`` and ``--mli-tolerance``."""
    parser.add_argument(
        "--correlate",
        default=None,
        metavar="TARGET",
        help="rank every probe field and measure by Kendall's tau with TARGET: gap (train/acc - "
        "test/acc), loss_gap (test/loss - train/loss), test/acc, test/loss, a probe field...",
    )
    parser.add_argument(
        "--converged-key",
        default=CONVERGED_KEY,
        metavar="KEY",
        help=f"with --correlate, use only runs whose KEY is below --converged-below (default "
        f"{CONVERGED_KEY}: the last epoch's mean training loss, from the CSV log)",
    )
    parser.add_argument(
        "--converged-below",
        type=_level,
        default=CONVERGED_BELOW,
        metavar="LEVEL",
        help=f"default {CONVERGED_BELOW:g}; none: use every completed run",
    )
    parser.add_argument(
        "--mli-tolerance",
        type=float,
        default=TOLERANCE,
        metavar="FRACTION",
        help=f"an init-to-final interpolation is monotonic when no rise exceeds FRACTION times "
        f"the initial loss (default {TOLERANCE:g})",
    )


def write_from_arguments(runs: Sequence[Run], out: Path, args: argparse.Namespace) -> Written:
    """Write the monotonicity tables and, with ``--correlate``, the correlation (see above).

    Args:
        runs: the sweep's runs.
        out: the report directory.
        args: the parsed `add_arguments` options.

    Returns:
        Both parts' files and lines.
    """
    parts = [write_monotonicity(runs, out, tolerance=args.mli_tolerance)]
    if args.correlate is not None:
        parts.append(
            write_correlation(runs, out, args.correlate, args.converged_key, args.converged_below)
        )
    return Written(
        files=[f for part in parts for f in part.files],
        lines=[line for part in parts for line in part.lines],
        sections=[section for part in parts[::-1] for section in part.sections],  # ranking first
    )


def _level(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected a number or none") from None


def plot_correlation(correlations: Sequence[Correlation], target: str, path: Path) -> Path:
    """Draw horizontal bars of tau and granulated tau per measure, strongest at the top.

    Args:
        correlations: ranked as `correlate` returns them.
        target: the target's name (the title).
        path: the PNG to write.

    Returns:
        ``path``.
    """
    names = [f"{c.measure} ({c.runs} runs)" for c in correlations][::-1]
    taus = [_zero(c.tau) for c in correlations][::-1]
    psis = [_zero(c.granulated.psi) for c in correlations][::-1]
    figure = Figure(figsize=(7.5, 1.2 + 0.32 * len(names)), layout="constrained")
    axes = figure.subplots()
    positions = list(range(len(names)))
    axes.barh([p + 0.2 for p in positions], taus, height=0.4, label="Kendall tau")
    axes.barh([p - 0.2 for p in positions], psis, height=0.4, label="granulated tau (psi)")
    axes.set_yticks(positions, names, fontsize=8)
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set_xlim(-1.0, 1.0)
    axes.set_xlabel(f"rank correlation with {target}")
    axes.set_title(f"measures vs {target}, strongest first (NaN drawn as 0)")
    axes.legend(loc="lower right", fontsize=8)
    return save_figure(figure, path)


def _row(correlation: Correlation, keys: Sequence[str]) -> dict[str, Any]:
    granulated = correlation.granulated
    row: dict[str, Any] = {
        "measure": correlation.measure,
        "tau": correlation.tau,
        "runs": correlation.runs,
        "psi": granulated.psi,
        "psi_runs": granulated.runs,
    }
    for key in keys:
        row[f"tau_{key}"] = granulated.per_key.get(key, math.nan)
        row[f"groups_{key}"] = granulated.groups.get(key, 0)
    return row


def _markdown(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[_text(v) for v in row] for row in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in cells]


def _text(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _zero(value: float) -> float:
    return 0.0 if math.isnan(value) else value
