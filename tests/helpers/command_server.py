"""A process that imports lsuite's commands once and forks a child for every command it is sent.

Started by `timed_run` (one per pytest process) as ``python command_server.py``. Protocol, one
JSON or text line each way on its stdin/stdout:

- in: ``{"module", "args", "cwd", "env", "stdout", "stderr"}`` (paths of files for the output);
- out: ``pid N`` when the child started, then ``rc N`` when it ended (N < 0: killed by signal -N);
  or ``stale`` (and the server exits) when an lsuite source file changed since it was imported.

The child is what ``python -m MODULE ARGS`` started in ``cwd`` with ``env`` would be, minus the
~6 s of CPU that importing torch and Lightning costs: its own session (so a timeout kills its
process group), stdin ``/dev/null``, stdout and stderr the given files, ``sys.path`` led by ``cwd``
and the entries of ``PYTHONPATH``, and the module run by `runpy` as ``__main__`` (a fresh copy,
not the preloaded one), then the interpreter's ordinary exit (atexit handlers, exit code).
The server stays single-threaded (it waits for each child before reading the next line), as a
process must be to fork safely.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys

PRELOAD = ("lsuite.train", "lsuite.probe", "lsuite.report.cli")
"""Imported before the first fork: together they pull in torch, Lightning, Hydra and wandb."""


def serve() -> dict | None:
    """Answer requests until stdin closes; return the request in a child, None in the server.

    A request that finds a preloaded lsuite source file changed since (an edit while tests run)
    is answered ``stale`` and the server exits: the client starts a fresh one.
    """
    for name in PRELOAD:
        importlib.import_module(name)
    sources = _lsuite_sources()
    _reply("ready")
    for line in sys.stdin:
        request = json.loads(line)
        if _lsuite_sources() != sources:
            _reply("stale")
            return None
        pid = os.fork()
        if pid == 0:
            return request
        _reply(f"pid {pid}")
        _, status = os.waitpid(pid, 0)
        _reply(f"rc {os.waitstatus_to_exitcode(status)}")
    return None


def _lsuite_sources() -> dict[str, int]:
    """Return the modification times of the imported lsuite modules' files (path -> ns)."""
    times = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and (name == "lsuite" or name.startswith("lsuite.")):
            try:
                times[path] = os.stat(path).st_mtime_ns
            except OSError:
                times[path] = -1
    return times


def _reply(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def become(request: dict) -> None:
    """Turn this forked child into ``python -m request['module'] *request['args']``."""
    os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(os.devnull)  # noqa: SIM115 (the process's stdin until it exits)
    extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.getcwd(), *extra, *BASE_PATH]
    importlib.invalidate_caches()
    module = request["module"]
    # A fresh __main__ (as `python -m` runs it): runpy warns about, and would reuse, the copy
    # the server imported.
    sys.modules.pop(module, None)
    sys.argv = [module, *request["args"]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


# The server's own directory is not on a command's path; the interpreter's and site's entries are.
BASE_PATH = [p for p in sys.path[1:] if p]

if __name__ == "__main__":
    child = serve()
    if child is not None:
        become(child)
