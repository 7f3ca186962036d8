"""Run a command with a hard timeout that also kills its children (DDP ranks) when it hangs.

``python -m lsuite.<command> ARGS`` (sys.executable) is forked from a server that imported torch,
Lightning and lsuite once (`command_server`), as a real process in its own session with the
given cwd, environment and output: each command then costs its own work, not ~6 s of imports.
Commands that start other processes from their arguments (DDP: ``trainer=ddp_cpu``,
``strategy=ddp...``, ``devices=2``) and every other command run as plain subprocesses, as do all
commands under ``LSUITE_TEST_FORK=0``.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

FORKED_MODULES = frozenset({"lsuite.train", "lsuite.probe", "lsuite.report.cli"})
STARTS_PROCESSES = re.compile(r"ddp|devices=(?!1\b)|num_nodes=")
HELPERS = Path(__file__).resolve().parent
SERVER = HELPERS / "command_server.py"
START_TIMEOUT = 300.0  # seconds for the server's imports on a loaded 2-core machine


def command_env(*, helpers: bool = False, **extra: str) -> dict[str, str]:
    """Return the environment for a test's command.

    This process's (wandb offline and silent, the probes' side-effect checks on: tests/conftest.py)
    without a DDP port an earlier run left, plus ``extra``; ``helpers`` puts tests/helpers (test
    probes, callbacks) first on ``PYTHONPATH``.
    """
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **extra}
    env.pop("MASTER_PORT", None)
    if helpers:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HELPERS), env.get("PYTHONPATH")) if p)
    return env


def run_timed(cmd, *, timeout, cwd=None, env=None):
    """Return ``subprocess.run(cmd, capture_output=True, text=True)``'s result, or fail the test.

    The command runs in its own session; on timeout the whole process group is killed, so a
    hung rank started by Lightning's DDP launcher does not outlive the test.
    """
    cmd = [str(part) for part in cmd]
    env = dict(os.environ if env is None else env)
    cwd = str(cwd or os.getcwd())
    if _forkable(cmd, env):
        try:
            return _server().run(cmd, cwd=cwd, env=env, timeout=timeout)
        except StaleServer:  # lsuite's sources were edited since it imported them
            return _server().run(cmd, cwd=cwd, env=env, timeout=timeout)
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=cwd,
        env=env,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        _fail_timeout(cmd, timeout, stderr)
    return subprocess.CompletedProcess(cmd, process.returncode, stdout, stderr)


def _forkable(cmd: list[str], env: dict[str, str]) -> bool:
    return (
        os.environ.get("LSUITE_TEST_FORK", "1") != "0"
        and env.get("LSUITE_TEST_FORK", "1") != "0"
        and len(cmd) >= 3
        and cmd[0] == sys.executable
        and cmd[1] == "-m"
        and cmd[2] in FORKED_MODULES
        and not any(STARTS_PROCESSES.search(arg) for arg in cmd[3:])
    )


def _fail_timeout(cmd: list[str], timeout: float, stderr: str) -> None:
    pytest.fail(f"timed out after {timeout} s (a hang?): {' '.join(cmd)}\n{stderr[-3000:]}")


class StaleServer(Exception):
    """The server's imported lsuite modules are older than their files; it has exited."""


class _Server:
    """The pytest process's `command_server`, talked to over its stdin and stdout."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tempfile.gettempdir(),
        )
        self._buffer = ""
        reply = self._read_line(START_TIMEOUT)
        if reply != "ready":
            raise RuntimeError(f"the command server did not start: {reply!r}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, cmd: list[str], *, cwd: str, env: dict, timeout: float):
        with tempfile.TemporaryDirectory(prefix="lsuite-cmd-") as folder:
            out, err = Path(folder, "stdout"), Path(folder, "stderr")
            request = {"module": cmd[2], "args": cmd[3:], "cwd": cwd, "env": env}
            request |= {"stdout": str(out), "stderr": str(err)}
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            first = self._read_line(60.0)
            if first == "stale":
                self.process.wait(timeout=30)
                raise StaleServer
            pid = int(_value(first, "pid"))
            try:
                code = int(self._expect("rc", timeout))
            except TimeoutError:
                os.killpg(pid, signal.SIGKILL)
                self._expect("rc", 60.0)
                _fail_timeout(cmd, timeout, err.read_text(errors="replace"))
            stdout = out.read_text(errors="replace")
            stderr = err.read_text(errors="replace")
        return subprocess.CompletedProcess(cmd, code, stdout, stderr)

    def _expect(self, word: str, timeout: float) -> str:
        return _value(self._read_line(timeout), word)

    def _read_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while "\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096).decode()
                if not chunk:
                    raise RuntimeError("the command server exited")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition("\n")
        return line

    def close(self) -> None:
        if self.alive():
            self.process.stdin.close()
            self.process.wait(timeout=30)


def _value(line: str, word: str) -> str:
    kind, _, value = line.partition(" ")
    if kind != word:
        raise RuntimeError(f"command server: expected {word!r}, got {line!r}")
    return value


_instance: _Server | None = None


def _server() -> _Server:
    global _instance
    if _instance is None or not _instance.alive():
        _instance = _Server()
        atexit.register(_instance.close)
    return _instance
