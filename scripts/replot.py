"""Rebuild every plot of a run from its saved probe records.

Usage: ``python scripts/replot.py RUN_DIR [--only NAME ...]``. Reads ``RUN_DIR/probes/*.jsonl``
and writes ``RUN_DIR/plots/`` (each file atomically, replacing earlier versions); records of
results without a plot (and failure records) are skipped; records of earlier versions (schema 1)
are read too.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from lsuite.errors import ConfigError
from lsuite.plots.render import render
from lsuite.results.jsonl import read_records
from lsuite.results.records import read_record

log = logging.getLogger("replot")


def replot(run_dir: Path, only: list[str] | None = None) -> list[Path]:
    """Render every record of ``run_dir/probes/*.jsonl`` into ``run_dir/plots``.

    Args:
        run_dir: the run directory.
        only: probe names (file stems) to replot; all when None.

    Returns:
        The files written.
    """
    probes = Path(run_dir) / "probes"
    written: list[Path] = []
    for path in sorted(probes.glob("*.jsonl")):
        if only and path.stem not in only:
            continue
        for number, raw in enumerate(read_records(path), start=1):
            try:
                record = read_record(raw)
            except ConfigError as error:
                log.warning("%s: record %d: skipped: %s", path, number, error)
                continue
            record = dataclasses.replace(record, meta={"probe": path.stem, **record.meta})
            written.extend(render(record, Path(run_dir) / "plots"))
    return written


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and replot; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="run directory holding probes/*.jsonl")
    parser.add_argument("--only", nargs="*", help="probe names to replot (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (args.run_dir / "probes").is_dir():
        log.error("%s has no probes/ directory", args.run_dir)
        return 2
    written = replot(args.run_dir, args.only)
    log.info("wrote %d plot(s) to %s", len(written), args.run_dir / "plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
