import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_prints_the_table():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_landscape.py"), "--smoke", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("device: CPU")
    assert "| model | section | method | median s |" in out
    for model in ("mlp", "resnet"):
        for label in ("3x3 plane", "5-point interpolation"):
            for method in ("loss-landscapes", "lsuite"):
                assert f"| {model} | {label} | {method} |" in out
        assert f"# modes {model} loop" in out
