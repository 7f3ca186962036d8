"""Report a probe's progress (matvecs, grid points) to whoever listens; a no-op otherwise.

Probes call `progress_total` once they know their budget and `progress_advance` after each unit of
work. Nothing happens unless a listener was installed with `listening` (the measurement session
does that on rank zero to draw a progress line), so the calls cost nothing in a plain script.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Listener = Callable[[str, int | None, str | None], None]
"""``listener(event, value, unit)``: ``("total", n, unit)`` or ``("advance", n, None)``."""

_listeners: list[Listener] = []


def progress_total(total: int, unit: str) -> None:
    """Announce the work of the running probe: ``total`` units such as ``"matvecs"``.

    Args:
        total: the number of units the probe will do at most.
        unit: what one unit is, e.g. ``"matvecs"`` or ``"grid points"``.
    """
    for listener in _listeners:
        listener("total", int(total), unit)


def progress_advance(n: int = 1) -> None:
    """Report ``n`` more units done.

    Args:
        n: units finished since the last call.
    """
    for listener in _listeners:
        listener("advance", int(n), None)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send every progress call made inside the block to ``listener``.

    Args:
        listener: called as ``listener(event, value, unit)`` (see `Listener`).

    Yields:
        Nothing; the block runs the probe.
    """
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
