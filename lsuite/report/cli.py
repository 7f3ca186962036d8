"""The ``lsuite-report`` command: a summary page, details, tables and figures for one sweep."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from lsuite.errors import ConfigError
from lsuite.report import intrinsic_dim
from lsuite.report.build import Report, report
from lsuite.report.correlation_report import add_arguments, write_from_arguments

log = logging.getLogger(__name__)

__all__ = ["Report", "main", "report"]


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``lsuite-report SWEEP_DIR [--out DIR] [--fields ...] [--x KEY] [--open]``."""
    parser = argparse.ArgumentParser(
        prog="lsuite-report",
        description="Summarise the runs of an lsuite-train sweep (a multirun directory).",
    )
    parser.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="hydra.sweep.dir")
    parser.add_argument("--out", type=Path, default=None, help="default: SWEEP_DIR/report")
    parser.add_argument(
        "--fields",
        nargs="+",
        default=(),
        metavar="PATTERN",
        help="fields to show, as shell patterns (test/acc 'hessian_*/trace'); default: every "
        "field that describes the model",
    )
    parser.add_argument(
        "--x", default=None, metavar="KEY", help="swept key on the x axis; default: the one "
        "with the most values",
    )  # fmt: skip
    parser.add_argument(
        "--open", action="store_true", help="print only the summary page's path (index.html)"
    )
    add_arguments(parser)  # --correlate, --converged-key, --converged-below, --mli-tolerance
    intrinsic_dim.add_arguments(parser)  # --intrinsic-dim, --intrinsic-metric, ...-baseline
    args = parser.parse_args(argv)
    try:
        result = report(
            args.sweep_dir,
            args.out,
            fields=args.fields,
            x=args.x,
            analyses=lambda runs, out: write_from_arguments(runs, out, args),
        )
        extra = result.analysis
        intrinsic = intrinsic_dim.write_from_arguments(result.runs, result.directory, args)
    except (FileNotFoundError, ConfigError) as error:
        print(f"lsuite-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    if args.open:
        print(result.index)
        return
    print("\n".join([*summary_lines(result, args.sweep_dir), *extra.lines, *intrinsic]))


def summary_lines(result: Report, sweep_dir: Path) -> list[str]:
    """Return what ``lsuite-report`` prints: counts, notes and where the pages went."""
    lines = [f"lsuite-report: {len(result.runs)} runs in {sweep_dir}"]
    lines += [f"  note: {note}" for note in result.notes]
    lines.append(f"  summary: {result.index} (and README.md)")
    lines.append(f"  details: {result.directory / 'details.html'} (and DETAILS.md)")
    lines.append(
        f"  tables: {result.directory / 'runs.csv'}, {result.directory / 'measurements.csv'}"
    )
    figures = [f for f in result.files if f.suffix == ".png"]
    lines.append(f"  figures: {len(figures)} in {result.directory}")
    return lines


if __name__ == "__main__":
    main()
