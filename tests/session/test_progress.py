"""Probe progress: no-op without a listener; the session's rich line on rank zero only."""

import io

from rich.console import Console

from lsuite.probes.progress import listening, progress_advance, progress_total
from lsuite.session import progress_display
from lsuite.session.progress_display import ProgressLine, progress_line


def test_calls_without_a_listener_do_nothing():
    progress_total(10, "matvecs")
    progress_advance(3)


def test_a_listener_gets_totals_and_advances():
    events = []
    with listening(lambda *event: events.append(event)):
        progress_total(4, "matvecs")
        progress_advance()
        progress_advance(2)
    progress_advance()  # after the block: nobody listens
    assert events == [("total", 4, "matvecs"), ("advance", 1, None), ("advance", 2, None)]


def test_the_line_appears_after_the_delay_and_counts(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(
        progress_display, "_console", lambda: Console(file=out, force_terminal=True, width=80)
    )
    line = ProgressLine("hessian_trace", delay=0.0)
    line("total", 8, "matvecs")
    for _ in range(8):
        line("advance", 1, None)
    assert line.done == 8 and line._progress is not None
    line.close()
    assert "hessian_trace" in out.getvalue()


def test_a_fast_probe_shows_nothing():
    line = ProgressLine("quick", delay=60.0)
    line("total", 2, "grid points")
    line("advance", 2, None)
    assert line._progress is None
    line.close()


def test_disabled_on_other_ranks():
    with progress_line("x", enabled=False) as line:
        progress_advance()
    assert line is None
