import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_run_prints_startup_and_probe_time():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_probe_startup.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=True,
    ).stdout
    assert "device: CPU" in out
    assert "| start-up (wall - probes) |" in out
    assert "| probes' own seconds |" in out
    assert "target: start-up <= 3 s" in out
