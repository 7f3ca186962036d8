"""The README's cheap commands, as written there: the error examples (through the real command,
word for word), the composing examples and experiments (they parse and compose), ``--cfg job``
and ``--help``."""

import re
import shlex
import sys
from pathlib import Path

import pytest
from timed_run import command_env, run_timed

from lsuite.config.cli_check import check_command_line
from lsuite.config.paths import config_dir
from lsuite.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"


def code_blocks(section: str) -> list[list[str]]:
    """Return the lines of each fenced code block in the README section titled ``section``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    blocks, current = [], None
    for line in text[start : end if end > 0 else None].splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def commands(section: str) -> list[str]:
    """Return the ``lsuite-train`` command lines of a section, comments removed."""
    found = []
    for block in code_blocks(section):
        joined = "\n".join(block).replace("\\\n", " ").splitlines()  # continuation lines
        for line in joined:  # OMP_NUM_THREADS=1 lsuite-train ... too
            if re.match(r"(?:[A-Z_]+=\S*\s+)*lsuite-train(?:\s|$)", line):
                found.append(line)
    return found


def error_examples() -> list[tuple[str, str]]:
    """Return the ``$ lsuite-train ...`` lines of "Composing runs" with the line they print."""
    pairs = []
    for block in code_blocks("Composing runs"):
        for i, line in enumerate(block):
            if line.startswith("$ lsuite-train"):
                pairs.append((line[2:], block[i + 1]))
    return pairs


def argv(line: str, home: Path) -> list[str]:
    """Split a README command line as the shell would (``$HOME`` expanded, ``~`` in a value not)."""
    words = shlex.split(line, comments=True)
    words = [w.replace("$HOME", str(home)) for w in words]
    return words[words.index("lsuite-train") + 1 :]


ERRORS = error_examples()


def test_the_readme_has_the_examples_this_file_checks():
    assert len(ERRORS) >= 5
    assert any("data.data_dir=~/datasets" in command for command, _ in ERRORS)
    assert any("data.data_dir=$HOME/datasets" in line for line in commands("Composing runs"))


@pytest.mark.parametrize(("line", "expected"), ERRORS, ids=[c for c, _ in ERRORS])
def test_error_example_prints_what_the_readme_says(line, expected, tmp_path):
    env = command_env()
    result = run_timed(
        [sys.executable, "-m", "lsuite.train", *argv(line, tmp_path)],
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [expected]
    assert not list(tmp_path.iterdir())  # stopped before a run directory was made


@pytest.mark.parametrize(
    "line",
    [
        line
        for section in (
            "Composing runs",
            "Optimizers that shape the landscape: SAM, ASAM, SWA",
            "Subspaces trained from scratch (`module=subspace`)",
            "Ensembles and function-space diversity (probes=ensemble, experiment=ensembles)",
            "Generalization measures (`probes=generalization`)",
            "Do flat minima generalize? `--correlate`, optimisation measures and MLI across a "
            "sweep",
        )
        for line in commands(section)
    ],
)
def test_example_command_parses_and_composes(line, tmp_path):
    """Each example composes and validates; a data set that is not on this machine may be
    missing, but then the error names the directory the example gave."""
    args = argv(line, tmp_path)
    try:
        check_command_line(args, config_dir())
    except ConfigError as error:
        assert str(error).startswith("data.data_dir: ") and str(tmp_path) in str(error), error


def test_cfg_job_prints_the_composed_config(tmp_path):
    result = run_timed(
        [sys.executable, "-m", "lsuite.train", "--cfg", "job", "probes=hessian_eigenvalues"],
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "hessian_eigenvalues:" in result.stdout
    assert "_target_: lsuite.probes." in result.stdout
    assert "run_name: ${hydra:job.override_dirname}" in result.stdout


def test_help_lists_the_groups(tmp_path):
    result = run_timed(
        [sys.executable, "-m", "lsuite.train", "--help"],
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    groups = result.stdout.split("== Configuration groups ==", 1)[1]
    for group in ("data:", "model:", "probes:", "experiment:"):
        assert group in groups
    assert "hessian_eigenvalues" in groups and "hessian_eigs," not in groups
