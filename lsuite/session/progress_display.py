"""Draw a `rich` progress line for a probe that runs longer than a couple of seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lsuite.probes.progress import listening

DELAY_SECONDS = 2.0
"""A probe shows its progress line only once it has run this long."""


class ProgressLine:
    """Listener for `lsuite.probes.progress` that draws ``name  done/total unit  elapsed``.

    Args:
        name: the probe's name.
        delay: seconds before the line appears (short probes stay silent).
    """

    def __init__(self, name: str, delay: float = DELAY_SECONDS) -> None:
        self.name = name
        self.delay = delay
        self.start = time.perf_counter()
        self.total: int | None = None
        self.unit = "steps"
        self.done = 0
        self._progress: Any = None
        self._task: Any = None

    def __call__(self, event: str, value: int | None, unit: str | None) -> None:
        """Take one progress event (see `lsuite.probes.progress.Listener`)."""
        if event == "total":
            self.total, self.unit, self.done = value, unit or self.unit, 0
        elif value is not None:
            self.done += value
        if self._progress is None and time.perf_counter() - self.start >= self.delay:
            self._open()
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=self.done,
                total=self.total,
                description=f"probe {self.name} ({self.unit})",
            )

    def close(self) -> None:
        """Remove the line."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _open(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=_console(),
            transient=True,
        )
        self._task = self._progress.add_task(f"probe {self.name}", total=self.total)
        from rich.errors import LiveError

        try:
            self._progress.start()
        except LiveError:  # another live display (a caller's own bar) owns the terminal
            self._progress = None
            self.delay = float("inf")


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def progress_line(name: str, enabled: bool) -> Iterator[ProgressLine | None]:
    """Show the progress of the probe ``name`` while the block runs, when ``enabled``.

    Args:
        name: the probe's name.
        enabled: False in every rank but zero, and when the run's progress bar is off.

    Yields:
        The listener, or None when disabled.
    """
    if not enabled:
        yield None
        return
    line = ProgressLine(name)
    try:
        with listening(line):
            yield line
    finally:
        line.close()
