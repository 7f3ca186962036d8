"""Run a command with a hard timeout that also kills its children (DDP ranks) when it hangs."""

import os
import signal
import subprocess

import pytest


def run_timed(cmd, *, timeout, **kwargs):
    """Return ``subprocess.run(cmd, capture_output=True, text=True)``'s result, or fail the test.

    The command runs in its own session; on timeout the whole process group is killed, so a
    hung rank started by Lightning's DDP launcher does not outlive the test.
    """
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(
            f"timed out after {timeout} s (a hang?): {' '.join(map(str, cmd))}\n{stderr[-3000:]}"
        )
    return subprocess.CompletedProcess(cmd, process.returncode, stdout, stderr)
