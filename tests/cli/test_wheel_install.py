"""A non-editable install of the built wheel finds its configs from any working directory."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_ships_configs_and_runs_from_elsewhere(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(wheels.glob("lsuite-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "lsuite/conf/train.yaml" in names
    assert "lsuite/conf/model/mlp.yaml" in names
    # Install the wheel into a separate target (non-editable), then import it from another directory
    # with the checkout off the path: configs must come from inside the installed package.
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import lsuite.config.paths as p, lsuite; "
        "print(p.config_dir()); print(lsuite.__file__)"
    )
    show = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert show.returncode == 0, show.stderr[-3000:]
    conf_dir, package_file = show.stdout.split()
    assert Path(conf_dir) == target / "lsuite" / "conf"
    assert Path(package_file).is_relative_to(target)
    job = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); sys.argv = sys.argv[1:]; "
            "from lsuite.train import main; main()",
            str(target),
            "--cfg",
            "job",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    assert "_target_: lsuite.model.mlp.MLP" in job.stdout
