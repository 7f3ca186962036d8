"""Write a report page as Markdown and as HTML (a sortable table, figures, notes)."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsuite.results.jsonl import write_atomic


@dataclass(frozen=True)
class Table:
    """A table of formatted cells.

    Attributes:
        header: the column names.
        rows: the cells, formatted.
        sort: per cell, the number a click on its column sorts by (None: its text).
    """

    header: list[str]
    rows: list[list[str]]
    sort: list[list[float | None]] = field(default_factory=list)


@dataclass(frozen=True)
class Section:
    """A heading with paragraphs, a bulleted list, a table and figures (any may be empty).

    Attributes:
        heading: the section's title.
        text: paragraphs (Markdown with backticks; HTML shows them as code).
        items: a bulleted list.
        table: a table, or None.
        figures: figure files, relative to the page.
    """

    heading: str
    text: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    table: Table | None = None
    figures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Written:
    """What one part of a report wrote, what to print, and what the summary page shows of it.

    Attributes:
        files: the files written.
        lines: the summary to print (the table included).
        sections: the part's sections on the summary page.
    """

    files: list[Path]
    lines: list[str]
    sections: list[Section] = field(default_factory=list)


@dataclass(frozen=True)
class Page:
    """A report page.

    Attributes:
        title: the heading.
        intro: paragraphs under the heading.
        sections: the sections, in order.
    """

    title: str
    intro: list[str]
    sections: list[Section]


def format_cell(value: Any) -> str:
    """Return a table cell: floats to 4 significant digits, None as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def table(header: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Return the cells of ``rows`` for the columns ``header``, formatted."""
    return [[format_cell(row.get(column)) for column in header] for row in rows]


def write_page(page: Page, directory: Path, markdown_name: str, html_name: str) -> list[Path]:
    """Write ``page`` as ``directory/markdown_name`` and ``directory/html_name``.

    Returns:
        The two files.
    """
    return [
        write_atomic(directory / markdown_name, markdown(page)),
        write_atomic(directory / html_name, to_html(page)),
    ]


def markdown(page: Page) -> str:
    """Return the page as Markdown."""
    lines = [f"# {page.title}", ""]
    for paragraph in page.intro:
        lines += [paragraph, ""]
    for section in page.sections:
        lines += [f"## {section.heading}", ""]
        for paragraph in section.text:
            lines += [paragraph, ""]
        if section.items:
            lines += [f"- {item}" for item in section.items] + [""]
        if section.table is not None and section.table.header:
            cells = section.table
            lines.append("| " + " | ".join(cells.header) + " |")
            lines.append("|" + "---|" * len(cells.header))
            for row in cells.rows:
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
            lines.append("")
        if section.figures:
            lines += [f"![{name}]({name})" for name in section.figures] + [""]
    return "\n".join(lines)


_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 6px;font-size:small}th{cursor:pointer;"
    "background:#f4f4f4}img{max-width:100%}.figs{display:flex;flex-wrap:wrap;gap:8px}"
    ".figs img{width:560px}"
)

_SORT = """<script>
document.querySelectorAll("table.sortable th").forEach((th, i) => th.onclick = () => {
  const body = th.closest("table").tBodies[0], rows = [...body.rows];
  const dir = th.dataset.dir = th.dataset.dir === "1" ? "-1" : "1";
  const key = r => { const c = r.cells[i], s = c.dataset.sort ?? c.textContent;
    const n = parseFloat(s); return isNaN(n) ? [1, s] : [0, n]; };
  rows.sort((a, b) => { const p = key(a), q = key(b);
    return (p[0] - q[0] || (p[1] < q[1] ? -1 : p[1] > q[1] ? 1 : 0)) * dir; });
  rows.forEach(r => body.appendChild(r));
});
</script>"""
"""Click a column heading to sort by it (numbers by value, then text; again to reverse)."""


def to_html(page: Page) -> str:
    """Return the page as one self-contained HTML document (figures linked by relative path)."""
    e = html.escape
    parts = [
        "<!doctype html>",
        f"<html><head><meta charset='utf-8'><title>{e(page.title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{e(page.title)}</h1>",
    ]
    parts += [f"<p>{_inline(p)}</p>" for p in page.intro]
    for section in page.sections:
        parts.append(f"<h2>{_inline(section.heading)}</h2>")
        parts += [f"<p>{_inline(p)}</p>" for p in section.text]
        if section.items:
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in section.items))
            parts.append("</ul>")
        if section.table is not None and section.table.header:
            parts.append(_html_table(section.table))
        if section.figures:
            parts.append("<div class='figs'>")
            parts += [
                f"<a href='{e(n)}'><img src='{e(n)}' alt='{e(n)}'></a>" for n in section.figures
            ]
            parts.append("</div>")
    parts += [_SORT, "</body></html>"]
    return "\n".join(parts) + "\n"


def _html_table(cells: Table) -> str:
    e = html.escape
    out = ["<table class='sortable'><thead><tr>"]
    out += [f"<th title='click to sort'>{e(h)}</th>" for h in cells.header]
    out.append("</tr></thead><tbody>")
    for index, row in enumerate(cells.rows):
        sort = cells.sort[index] if index < len(cells.sort) else []
        tds = []
        for column, cell in enumerate(row):
            value = sort[column] if column < len(sort) else None
            attribute = f" data-sort='{value!r}'" if value is not None else ""
            tds.append(f"<td{attribute}>{e(cell)}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escape ``text`` for HTML, showing ```code``` spans as code and ``[a](b)`` as links."""
    out = []
    for index, part in enumerate(text.split("`")):
        out.append(f"<code>{html.escape(part)}</code>" if index % 2 else _links(part))
    return "".join(out)


_HTML_TWINS = {"README.md": "index.html", "DETAILS.md": "details.html"}
"""Links between the Markdown pages point at their HTML twins in HTML."""


def _links(text: str) -> str:
    def link(match: re.Match[str]) -> str:
        target = _HTML_TWINS.get(match.group(2), match.group(2))
        return f"<a href='{target}'>{match.group(1)}</a>"

    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", link, html.escape(text))
