import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.image import imread

from lsuite.report.runs import find_runs

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "subspace_line.py"


def _script():
    spec = importlib.util.spec_from_file_location("subspace_line", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One tiny sweep (1 epoch, 2 training batches per job) and the script's output."""
    out = tmp_path_factory.mktemp("subspace_line")
    command = [sys.executable, str(SCRIPT), "--epochs", "1", "--threads", "1"]
    command += ["--out", str(out / "sweep"), "--figure", str(out / "line.png")]
    command += ["trainer.limit_train_batches=2", "trainer.enable_progress_bar=false"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "WANDB_MODE": "offline"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def _job(sweep_dir: Path, module: str, seed: int) -> Path:
    jobs = [
        run.directory
        for run in find_runs(sweep_dir)
        if run.hyperparameters.get("module") == module and run.hyperparameters.get("seed") == seed
    ]
    assert len(jobs) == 1, [run.name for run in find_runs(sweep_dir)]
    return jobs[0]


@pytest.mark.slow
def test_figure_is_a_png_of_the_figure_size(sweep):
    out, stdout = sweep
    path = out / "line.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = imread(path).shape[:2]
    assert (width, height) == (704, 440)  # 6.4 x 4.0 inches at 110 dpi
    assert f"figure: {path}" in stdout


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_numbers_are_those_of_the_runs(sweep, seed):
    out, stdout = sweep
    found = _script().read_sweep(out / "sweep")
    assert sorted(found.standard) == sorted(found.midpoint) == [0, 1]
    line_dir = _job(out / "sweep", "subspace", seed)
    rows = json.loads((line_dir / "subspace.json").read_text())["points"]
    assert found.alpha[seed] == pytest.approx([i / 10 for i in range(11)])
    assert found.line_val_acc[seed] == [r["val_acc"] for r in rows]
    for module, metrics in (("classifier", found.standard), ("subspace", found.midpoint)):
        job = _job(out / "sweep", module, seed)
        status = json.loads((job / "status.json").read_text())
        assert metrics[seed]["test/acc"] == status["metrics"]["test/acc"]
        with (job / "csv" / "metrics.csv").open(newline="") as file:
            logged = [row["val/acc"] for row in csv.DictReader(file) if row.get("val/acc")]
        assert metrics[seed]["val/acc"] == float(logged[-1])
    # the line's midpoint is the network the subspace run validated last
    midpoint = next(r for r in rows if r["point"] == "alpha=0.50")
    assert found.midpoint[seed]["val/acc"] == pytest.approx(midpoint["val_acc"], abs=1e-6)
    printed = " ".join(f"{r['val_acc']:.3f}" for r in rows)
    assert f"seed {seed}: val acc along the line, alpha = 0 0.1 0.2" in stdout
    assert printed in stdout
    row = next(line for line in stdout.splitlines() if line.startswith("| standard training"))
    assert f"{found.standard[seed]['test/acc']:.3f}" in row


@pytest.mark.slow
def test_a_sweep_without_a_line_is_refused(sweep, tmp_path):
    out, _ = sweep
    copy = tmp_path / "sweep"
    shutil.copytree(out / "sweep", copy)
    (_job(copy, "subspace", 1) / "subspace.json").unlink()
    with pytest.raises(SystemExit, match=r"subspace\.json: missing"):
        _script().read_sweep(copy)
