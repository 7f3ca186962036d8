"""The README's "Resuming, starting from weights, seeds" commands parse and compose as written."""

import re
import shlex
from pathlib import Path

import pytest

from lsuite.config.cli_check import check_command_line
from lsuite.config.paths import config_dir
from lsuite.config.resume import with_implied_run_dir

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "Resuming, starting from weights, seeds"


def commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {SECTION}\n")
    end = text.find("\n## ", start + 1)
    lines = text[start:end].splitlines()
    return [line for line in lines if re.match(r"lsuite-train(?:\s|$)", line)]


def test_the_section_shows_each_hinge():
    text = " ".join(commands())
    for key in ("resume=auto", "resume=runs/a", "init_from=", "data_seed=", "trajectory"):
        assert key in text


@pytest.mark.parametrize("line", commands())
def test_example_parses_and_composes(line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "a" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "checkpoints" / "last.ckpt").write_bytes(b"")
    args = shlex.split(line, comments=True)[1:]
    args = with_implied_run_dir(args)
    if any(a.startswith("resume=runs/a") for a in args):
        assert args[-1] == f"hydra.run.dir={tmp_path / 'runs' / 'a'}"
    check_command_line(args, config_dir())
