"""Build a sweep's report: a one-page summary, a details page, their figures and tables."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsuite.errors import ConfigError
from lsuite.report.curves import curves_figure
from lsuite.report.figures import filename, final_figure, save, training_figure
from lsuite.report.groups import axes, has_seeds, main_key, seed_keys, sort_key
from lsuite.report.page import Page, Section, Written, write_page
from lsuite.report.run_table import MAX_METRIC_COLUMNS, groups_table, limit_columns, runs_table
from lsuite.report.runs import Run, find_runs
from lsuite.report.summary import field_points, points_rows
from lsuite.report.table import (
    MEASUREMENT_COLUMNS,
    columns,
    final_values,
    hyperparameter_keys,
    measurement_rows,
    notes,
    run_rows,
    select_fields,
    stderr_field,
    write_csv,
)

_STAGES = ("train", "val", "test")
_DETAIL_STAGES = ("train", "val")
"""Final metrics whose figures go on the details page (the summary shows ``test/*``)."""


Analyses = Callable[[list[Run], Path], Written]
"""Extra analyses of a sweep: (runs, report directory) -> their files, lines and page sections."""


@dataclass(frozen=True)
class Report:
    """Where a report went and what it found.

    Attributes:
        directory: the report's directory.
        runs: the runs read.
        files: every file written (tables, figures, pages).
        notes: runs that did not finish, or have missing or partial records.
        index: the summary page (``index.html``).
        x: the key on the x axis of the summary figures (None: nothing swept).
        left_out: reason -> fields left out of the table and figures.
        analysis: what the ``analyses`` of `report` wrote.
    """

    directory: Path
    runs: list[Run]
    files: list[Path]
    notes: list[str]
    index: Path | None = None
    x: str | None = None
    left_out: dict[str, list[str]] = field(default_factory=dict)
    analysis: Written = field(default_factory=lambda: Written([], []))


def report(
    sweep_dir: Path,
    out: Path | None = None,
    *,
    fields: Sequence[str] = (),
    x: str | None = None,
    analyses: Analyses | None = None,
) -> Report:
    """Read every run of ``sweep_dir`` and write its summary, details, tables and figures.

    The summary (``index.html``, twin ``README.md``): run counts, the swept keys, the runs table
    (one row per configuration, mean ± standard error, when the sweep has several seeds), notes
    (unfinished runs, missing records, columns left out), and one figure per field
    (``final_<field>.png``) against the x key (`lsuite.report.groups.main_key` unless ``x``).
    The details (``details.html``, twin ``DETAILS.md``): every run, train/val metrics, probe
    fields over training (``training_<field>.png``, probes measured more than once) and every
    run's curves overlaid (``curves_<probe>.png``). Tables: ``runs.csv``, ``measurements.csv``,
    ``figures.csv`` (every point drawn: mean, se, std, n) and ``groups.csv`` (with seeds).

    Args:
        sweep_dir: a multirun directory (or a single run's directory).
        out: where to write; ``<sweep_dir>/report`` when None.
        fields: shell patterns of the fields to show (``test/*``, ``hessian_trace/trace``);
            empty: every field that describes the model.
        x: the swept key on the x axis.
        analyses: called with the runs and the report directory before the pages are written;
            the sections of what it returns (``--correlate``, monotonic interpolation) lead the
            summary page, before the runs table; it is kept as `Report.analysis`.

    Returns:
        What was written and found.

    Raises:
        FileNotFoundError: when ``sweep_dir`` holds no runs.
        ConfigError: when ``x`` is not a swept key.
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
    keys, seeds = axes(runs), seed_keys(runs)
    if x is not None and x not in keys:
        raise ConfigError(f"--x: got {x!r}; expected one of the swept keys {keys}")
    x = x or main_key(runs, keys)
    out = Path(out) if out is not None else sweep_dir / "report"
    rows = run_rows(runs)
    kept, left_out = select_fields(rows, fields)
    every = [k for k in columns(rows) if "/" in k]
    for pattern in fields:
        if not any(fnmatch.fnmatchcase(k, pattern) for k in every):
            raise ConfigError(f"--fields: {pattern!r} matches no field; the fields are {every}")
    files = [
        write_csv(out / "runs.csv", rows),
        write_csv(
            out / "measurements.csv",
            measurement_rows(runs),
            header=["run", "status", *hyperparameter_keys(runs), *MEASUREMENT_COLUMNS],
        ),
    ]
    finals = {run.name: final_values(run) for run in runs}
    summary_fields = [k for k in kept if k.split("/")[0] not in _DETAIL_STAGES]
    detail_fields = [k for k in kept if k.split("/")[0] in _DETAIL_STAGES]
    drawn: list[dict[str, Any]] = []

    def finals_figures(chosen: list[str]) -> list[str]:
        names = []
        for metric in chosen if x is not None else []:
            points = field_points(runs, metric, x, finals, stderr_field(every, metric))
            if points is None:
                continue
            name = filename("final", metric)
            categories = [run.hyperparameters.get(x) for run in runs]
            files.append(save(final_figure(points, categories), out / name))
            drawn.extend(points_rows(points, name))
            names.append(name)
        return names

    summary_figures = finals_figures(summary_fields)
    detail_figures = finals_figures(detail_fields)
    files.append(write_csv(out / "figures.csv", drawn, header=_FIGURE_COLUMNS))
    training = []
    for metric in (k for k in kept if k.split("/")[0] not in _STAGES):
        figure = training_figure(runs, metric, [*keys, *seeds], keys or seeds)
        if figure is not None:
            training.append(filename("training", metric))
            files.append(save(figure, out / training[-1]))
    curves = []
    for probe in dict.fromkeys(p for run in runs for p in run.records):
        figure = curves_figure(runs, probe, x, keys)
        if figure is not None:
            curves.append(filename("curves", probe))
            files.append(save(figure, out / curves[-1]))
    shown, beyond = limit_columns(kept)
    seeded = has_seeds(runs, keys)
    if seeded:
        table, group_rows = groups_table(runs, keys, shown, finals)
        files.append(write_csv(out / "groups.csv", group_rows))
    else:
        table = runs_table(runs, [*keys, *seeds], shown, finals)
    found = notes(runs)
    analysis = analyses(runs, out) if analyses is not None else Written([], [])
    files += analysis.files  # not stale
    title = sweep_dir.resolve().name
    context = _context(runs, keys, seeds, x, seeded, sweep_dir, bool(fields))
    listed = found + _left_out_notes(left_out, beyond)
    summary = Page(
        f"Sweep report: {title}",
        context,
        [
            *analysis.sections,
            Section("Runs", _table_text(seeded, seeds), table=table),
            *([Section("Notes", items=listed)] if listed else []),
            Section("At the end of training", _figure_text(x, seeded)),
            *_by_probe(summary_figures),
        ],
    )
    figure_sections = [
        Section("Train and validation metrics", figures=detail_figures),
        Section("Over training", ["Probes measured more than once."], figures=training),
        Section("Curves", [_curves_text(x)], figures=curves),
    ]
    details = Page(
        f"Sweep report, details: {title}",
        [f"`{sweep_dir}`. Back to [the summary](README.md)."],
        [
            Section("Every run", table=runs_table(runs, [*keys, *seeds], kept, finals)),
            *(section for section in figure_sections if section.figures),
        ],
    )
    files += write_page(summary, out, "README.md", "index.html")
    files += write_page(details, out, "DETAILS.md", "details.html")
    _remove_stale_figures(out, files)
    return Report(out, runs, files, found, out / "index.html", x, left_out, analysis)


_FIGURE_COLUMNS = ["figure", "field", "x_key", "x", "line", "mean", "se", "std", "n"]


def _context(
    runs: list[Run],
    keys: list[str],
    seeds: list[str],
    x: str | None,
    seeded: bool,
    sweep_dir: Path,
    chosen: bool,
) -> list[str]:
    """The summary's opening lines: counts, swept keys and their values, what is fixed."""
    counted: dict[str, int] = {}
    for run in runs:
        counted[run.status] = counted.get(run.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counted.items()))
    lines = [f"`{sweep_dir}`: {len(runs)} runs: {parts}."]
    if keys:
        values = [
            f"`{k}` ({', '.join(str(v) for v in _values(runs, k))})"
            + (" (x axis)" if k == x else "")
            for k in keys
        ]
        lines.append("Swept: " + ", ".join(values) + ".")
    if seeds:
        how = "averaged over" if seeded else "one per configuration"
        lines.append(f"Seeds: {', '.join(f'`{k}`' for k in seeds)} ({how}).")
    fixed = [
        f"`{k}={runs[0].hyperparameters.get(k)}`"
        for k in hyperparameter_keys(runs)
        if k not in keys and k not in seeds
    ]
    if fixed:
        lines.append("Same in every run: " + ", ".join(fixed) + ".")
    more = " (fields chosen by --fields)" if chosen else ""
    lines.append(f"More figures and every run{more}: [the details page](DETAILS.md).")
    return lines


def _values(runs: list[Run], key: str) -> list[Any]:
    found = {repr(r.hyperparameters.get(key)): r.hyperparameters.get(key) for r in runs}
    return sorted(found.values(), key=sort_key)


def _table_text(seeded: bool, seeds: list[str]) -> list[str]:
    if seeded:
        return [
            "One row per configuration: mean ± standard error over its completed runs "
            f"(differing in {', '.join(f'`{k}`' for k in seeds)}); `groups.csv` has the spread. "
            "Click a heading to sort."
        ]
    return ["One row per run. Click a heading to sort. All values: `runs.csv`."]


def _figure_text(x: str | None, seeded: bool) -> list[str]:
    if x is None:
        return ["No key was swept (seeds aside): no figures against a key."]
    bars = "over seeds" if seeded else "the probe's own estimate, where it records one"
    return [
        f"Final values against `{x}`, one line per value of the other swept keys; error bars: "
        f"standard error ({bars}). Points drawn: `figures.csv`."
    ]


def _left_out_notes(left_out: dict[str, list[str]], beyond: list[str]) -> list[str]:
    """Name the fields left out of the table and figures, and why."""
    lines = [
        f"Left out of the table and figures ({reason}): {_names(fields)} (all in `runs.csv`)."
        for reason, fields in left_out.items()
    ]
    if beyond:
        lines.append(
            f"Left out of this table (more than {MAX_METRIC_COLUMNS} value columns; they have "
            f"figures, and the details page and `runs.csv` have them): {_names(beyond)}."
        )
    return lines


def _curves_text(x: str | None) -> str:
    colour = f"coloured by `{x}`" if x else "one colour per run"
    return f"The final curves of every run, {colour}; dashed: runs that did not complete."


def _by_probe(figures: list[str]) -> list[Section]:
    """One section per probe (``final_<probe>.<field>.png``; ``test`` for the test metrics)."""
    groups: dict[str, list[str]] = {}
    for name in figures:
        groups.setdefault(name.removeprefix("final_").split(".")[0], []).append(name)
    return [Section(f"`{probe}`", figures=names) for probe, names in groups.items()]


def _names(fields: list[str]) -> str:
    """Return the fields as code, per-layer values (``probe/per_layer/...``) as one pattern."""
    names: dict[str, None] = {}
    for name in fields:
        probe, _, rest = name.partition("/")
        head, sep, _ = rest.partition("/")
        names[f"{probe}/{head}/*" if sep else name] = None
    return ", ".join(f"`{n}`" for n in names)


def _remove_stale_figures(directory: Path, written: list[Path]) -> None:
    """Delete figures an earlier report left in ``directory`` that this one did not draw."""
    kept = {path.name for path in written}
    for pattern in ("final_*.png", "training_*.png", "curves_*.png"):
        for path in directory.glob(pattern):
            if path.name not in kept:
                path.unlink()
