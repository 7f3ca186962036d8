"""Render the plots of a probe record, chosen by the record's result kind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

Plotter = Callable[[dict[str, Any], Path], list[Path]]


def _plotters() -> dict[str, Plotter]:
    return {}


def render(record: dict[str, Any], directory: Path) -> list[Path]:
    """Draw the plots for ``record`` into ``directory``; records without plots give ``[]``.

    Args:
        record: one probe record (``record["kind"]`` is the result class name).
        directory: the run's ``plots/`` directory.

    Returns:
        The files written.
    """
    plotter = _plotters().get(record.get("kind", ""))
    return plotter(record, Path(directory)) if plotter else []
