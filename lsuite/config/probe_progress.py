"""Show lsuite-probe's progress over checkpoints and probes as a `rich` bar on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def checkpoint_progress(enabled: bool, total: int) -> Iterator[Callable[[str | None], None]]:
    """Show a rich progress bar over ``total`` (checkpoint, probe) steps on stderr.

    Off when ``enabled`` is false or stderr is not a terminal. The probes draw their own lines
    (`lsuite.session`); this bar counts checkpoints x probes.

    Args:
        enabled: whether to show it (``--no-progress`` and ranks other than zero: False).
        total: number of steps.

    Yields:
        ``advance(description)``: call it before each step with what runs next, and with None
        after the last one.
    """
    if not enabled or not sys.stderr.isatty():
        yield lambda description: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task("lsuite-probe", total=total)
        started = [False]

        def advance(description: str | None) -> None:
            if started[0]:
                bar.advance(task)
            started[0] = description is not None
            if description is not None:
                bar.update(task, description=description)

        yield advance


__all__ = ["checkpoint_progress"]
