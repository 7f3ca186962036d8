"""Write a sweep report's page, as ``README.md`` and ``index.html``, from its tables and figures."""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsuite.results.jsonl import write_atomic


@dataclass(frozen=True)
class Page:
    """What a report page shows.

    Attributes:
        title: the heading (the sweep directory's name).
        source: the sweep directory.
        statuses: the status of every run.
        swept: the keys the sweep varies.
        fixed: ``key=value`` overrides shared by every run.
        header: the columns of the run table.
        rows: the run table's cells, formatted.
        notes: runs that did not finish or have missing or partial records.
        final_figures: figures of values at the end of training (paths relative to the page).
        training_figures: figures of values over training (paths relative to the page).
    """

    title: str
    source: Path
    statuses: list[str]
    swept: list[str]
    fixed: list[str]
    header: list[str]
    rows: list[list[str]]
    notes: list[str]
    final_figures: list[str]
    training_figures: list[str]

    def counts(self) -> str:
        """Return e.g. ``8 runs: 6 completed, 1 diverged, 1 failed``."""
        counted = Counter(self.statuses)
        parts = ", ".join(f"{n} {status}" for status, n in sorted(counted.items()))
        return f"{len(self.statuses)} runs: {parts}"


def format_cell(value: Any) -> str:
    """Return a table cell: floats to 4 significant digits, None as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def write_pages(page: Page, directory: Path) -> list[Path]:
    """Write ``README.md`` and ``index.html`` for ``page`` into ``directory``.

    Returns:
        The two files.
    """
    return [
        write_atomic(directory / "README.md", markdown(page)),
        write_atomic(directory / "index.html", to_html(page)),
    ]


def markdown(page: Page) -> str:
    """Return the page as Markdown."""
    lines = [f"# Sweep report: {page.title}", "", f"`{page.source}`: {page.counts()}.", ""]
    if page.swept:
        lines.append("Swept: " + ", ".join(f"`{k}`" for k in page.swept) + ".")
    if page.fixed:
        lines.append("Same in every run: " + ", ".join(f"`{k}`" for k in page.fixed) + ".")
    lines += ["", "## Runs", ""]
    lines.append("| " + " | ".join(page.header) + " |")
    lines.append("|" + "---|" * len(page.header))
    for row in page.rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    lines += ["", "Tables: `runs.csv` (one row per run), `measurements.csv` (one row per run and"]
    lines += ["measurement).", ""]
    if page.notes:
        lines += ["## Missing, partial and failed runs", ""]
        lines += [f"- {note}" for note in page.notes] + [""]
    for heading, figures in (
        ("At the end of training", page.final_figures),
        ("Over training", page.training_figures),
    ):
        if figures:
            lines += [f"## {heading}", ""]
            lines += [f"![{name}]({name})" for name in figures] + [""]
    return "\n".join(lines)


def to_html(page: Page) -> str:
    """Return the page as a self-contained HTML document (figures linked by relative path)."""
    e = html.escape
    parts = [
        "<!doctype html>",
        f"<html><head><meta charset='utf-8'><title>{e(page.title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:small}img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>Sweep report: {e(page.title)}</h1>",
        f"<p><code>{e(str(page.source))}</code>: {e(page.counts())}.</p>",
    ]
    if page.swept:
        parts.append(f"<p>Swept: {e(', '.join(page.swept))}.</p>")
    if page.fixed:
        parts.append(f"<p>Same in every run: {e(', '.join(page.fixed))}.</p>")
    parts.append("<h2>Runs</h2><table><tr>")
    parts += [f"<th>{e(h)}</th>" for h in page.header]
    parts.append("</tr>")
    for row in page.rows:
        parts.append("<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>")
    parts.append("</table>")
    parts.append(
        "<p>Tables: <a href='runs.csv'>runs.csv</a> (one row per run), "
        "<a href='measurements.csv'>measurements.csv</a> (one row per run and measurement).</p>"
    )
    if page.notes:
        parts.append("<h2>Missing, partial and failed runs</h2><ul>")
        parts += [f"<li>{e(note)}</li>" for note in page.notes]
        parts.append("</ul>")
    for heading, figures in (
        ("At the end of training", page.final_figures),
        ("Over training", page.training_figures),
    ):
        if figures:
            parts.append(f"<h2>{e(heading)}</h2>")
            parts += [f"<p><img src='{e(name)}' alt='{e(name)}'></p>" for name in figures]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def table(header: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Return the cells of ``rows`` for the columns ``header``, formatted."""
    return [[format_cell(row.get(column)) for column in header] for row in rows]
