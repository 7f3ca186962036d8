"""scripts/bench_modules.py runs (``--smoke``, in-process) and prints every module's ratio."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_modules.py"


@pytest.mark.parametrize("loop", ["module", "lightning"])
def test_smoke_run_prints_every_module(monkeypatch, capsys, loop):
    spec = importlib.util.spec_from_file_location("bench_modules", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(sys, "argv", ["bench_modules.py", "--smoke", "--dim", "50", "--loop", loop])
    bench.main()
    out = capsys.readouterr().out
    assert "D = 26122 parameters" in out and "d = 50" in out and f"{loop} loop" in out
    for name in ("plain", "line", "bezier", "fastfood"):
        assert any(line.startswith(name) for line in out.splitlines()), name
