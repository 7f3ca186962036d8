import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_run_prints_the_three_tables():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_hessian.py"), "--smoke", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=True,
    ).stdout
    assert "torch " in out and "threads" in out and "CPU:" in out
    assert "| method | ms | x gradient | x lsuite default |" in out
    assert "| lsuite matvec, engine=reuse |" in out
    assert "(2) Wall time to a trace within 1%" in out
    assert "| lsuite HessianTrace(method=hutchpp) |" in out
    assert "(3) Wall time to the top eigenvalue within 1e-3" in out
    assert "| lsuite hessian_eigenpairs (tol) |" in out
    for peer in ("PyHessian", "hessian-eigenthings", "curvlinops"):
        assert f"| {peer}" in out or f"skipped: {peer} not installed" in out
    assert out.rstrip().splitlines()[-1].startswith("total ")
