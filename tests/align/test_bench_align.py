"""The alignment benchmark script runs (``--smoke``) and prints its tables."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_align_smoke_prints_the_tables():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_align.py"), "--smoke", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=True,
    ).stdout
    assert "CPU:" in out and "threads" in out
    assert out.count("| lsuite weight_matching |") == 3
    assert out.count("reference finds the same permutations as lsuite: True") == 3
    assert "| naive |" in out and "| weight matching + REPAIR (lsuite) |" in out
    assert out.rstrip().splitlines()[-1].startswith("total ")
