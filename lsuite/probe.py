"""The ``lsuite-probe`` command: measure saved checkpoints of a run, a sweep or a weights file."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from lsuite.config.probe_progress import checkpoint_progress
from lsuite.errors import ConfigError

log = logging.getLogger("lsuite")

PROG = "lsuite-probe"
EXAMPLES = """examples:
  lsuite-probe runs/a                                   # the run's probes on last.ckpt
  lsuite-probe runs/a --ckpt all 'probes=[hessian_trace]' probes.hessian_trace.probe.num_matvecs=256
  lsuite-probe multirun/sweep --ckpt last               # every run of a sweep, one summary
  lsuite-probe --weights model.pt model=mlp data=digits 'probes=[hessian_trace]' --out measured
  lsuite-probe runs/a --ckpt epoch000.ckpt epoch005.ckpt last --pairs   # barrier matrix
  lsuite-probe runs/a trainer.devices=2                 # 2 processes, batches sharded
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        _fail(message)


def _fail(message: str, code: int = 2) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(code)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the command line: a target directory, options and Hydra-style overrides.

    Args:
        argv: the arguments after the program name.

    Returns:
        The namespace (``target``, ``ckpt``, ``weights``, ``out``, ``pairs``, ``progress``,
        ``overrides``).
    """
    parser = _Parser(
        prog=PROG,
        description="Measure saved weights with lsuite's probes (records in <dir>/probes/).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("args", nargs="*", help="RUN_DIR or SWEEP_DIR, then key=value overrides")
    parser.add_argument("--ckpt", nargs="+", default=None, help="last | best | all | PATH...")
    parser.add_argument("--weights", type=Path, help="a state dict or Lightning checkpoint file")
    parser.add_argument("--out", type=Path, help="output directory for --weights (default: .)")
    parser.add_argument("--pairs", action="store_true", help="interpolate every pair of points")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    ns = parser.parse_intermixed_args(list(argv))
    positional = list(ns.args)
    ckpt = list(ns.ckpt or [])
    positional += [c for c in ckpt if _is_override(c)]  # overrides after --ckpt's values
    ns.ckpt = [c for c in ckpt if not _is_override(c)] or None
    targets = [a for a in positional if not _is_override(a)]
    ns.overrides = [a for a in positional if _is_override(a)]
    if len(targets) > 1:
        _fail(f"got several directories {targets}; expected one RUN_DIR or SWEEP_DIR")
    ns.target = Path(targets[0]) if targets else None
    if ns.weights is None and ns.target is None:
        _fail("expected RUN_DIR, SWEEP_DIR or --weights FILE")
    if ns.weights is not None and (ns.target is not None or ns.ckpt):
        _fail("--weights FILE takes model=... data=... overrides, not a directory or --ckpt")
    if ns.out is not None and ns.weights is None:
        _fail("--out: only with --weights (records of a run go to the run directory)")
    return ns


def _is_override(arg: str) -> bool:
    """Whether ``arg`` is a ``key=value`` override rather than a path.

    Hydra names sweep jobs after their overrides (``0_data_seed=1,optim=sam``), so an argument
    that names an existing file or directory is a path even when it holds ``=``.

    Returns:
        True for an override.
    """
    return "=" in arg and not Path(arg).exists()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``lsuite-probe``; exits 2 with one line for bad input, before any work.

    Args:
        argv: the arguments (``sys.argv[1:]`` when None).
    """
    ns = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        code = _run(ns)
    except ConfigError as error:
        _fail(str(error))
    sys.exit(code)


def _run(ns: argparse.Namespace) -> int:
    from lsuite.config.run_dir import check_overrides, is_run_dir, sweep_runs

    if ns.weights is not None:
        return _weights(ns)
    target: Path = ns.target
    if not target.is_dir():
        raise ConfigError(f"RUN_DIR: got {str(target)!r}; no such directory")
    _check_ckpt(ns.ckpt)
    if is_run_dir(target):
        return _one_run(ns, target)
    runs = sweep_runs(target)
    if not runs:
        raise ConfigError(
            f"RUN_DIR: got {str(target)!r}; expected a run directory holding config.yaml "
            "(written by lsuite-train) or a sweep directory of such runs"
        )
    check_overrides(ns.overrides)  # once, before any run
    return _sweep(ns, target, runs)


def _check_ckpt(choices: Sequence[str] | None) -> None:
    from lsuite.config.run_checkpoints import CHOICES

    for choice in choices or ():
        if choice not in CHOICES and "." not in Path(choice).name and not Path(choice).exists():
            raise ConfigError(
                f"--ckpt: got {choice!r}; expected {', '.join(CHOICES)} or checkpoint paths"
            )


def _prepare(run_dir: Path, ns: argparse.Namespace) -> tuple[Any, list[Any]]:
    """Load a run's config, build its job and find its checkpoints (every check before work)."""
    from lsuite.config.probe_checkpoints import build_job
    from lsuite.config.run_checkpoints import checkpoint_dir, find_checkpoints
    from lsuite.config.run_dir import load_run_config

    cfg = load_run_config(run_dir, ns.overrides)
    directory = checkpoint_dir(run_dir, cfg)
    checkpoints = find_checkpoints(directory, ns.ckpt or (["all"] if ns.pairs else ["last"]))
    return build_job(cfg, run_dir), checkpoints


def _one_run(ns: argparse.Namespace, run_dir: Path) -> int:
    from lsuite.config.probe_sync import start_processes

    job, checkpoints = _prepare(run_dir, ns)
    sync, device = start_processes(job.cfg)
    job.module.to(device)
    if ns.pairs:
        from lsuite.config.probe_pairs import PairPoint, measure_pairs

        points = [PairPoint(c.path.stem, c) for c in checkpoints]
        matrices = measure_pairs(job, points, run_dir, sync=sync, progress=ns.progress)
        if sync.is_zero:
            print(f"{PROG}: {len(points)} points, matrices {sorted(matrices)} in {run_dir}")
        return 0
    failures = _measure_checkpoints(job, checkpoints, sync=sync, progress=ns.progress)
    if sync.is_zero:
        print(
            f"{PROG}: {len(checkpoints)} checkpoint(s) x {len(job.callbacks)} probe(s) -> "
            f"{run_dir / 'probes'} ({failures} failed)"
        )
    return 1 if failures else 0


def _measure_checkpoints(job: Any, checkpoints: Sequence[Any], *, sync: Any, progress: bool) -> int:
    """Measure every probe at every checkpoint in order; return the number of failures."""
    from lsuite.config.probe_checkpoints import checkpoint_meta, loaded, measure

    failures = 0
    total = len(checkpoints) * len(job.callbacks)
    with checkpoint_progress(progress and sync.is_zero, total) as advance:
        for checkpoint in checkpoints:
            with loaded(job, checkpoint):
                for index, callback in enumerate(job.callbacks):
                    advance(f"{checkpoint.path.name}: {callback.probe.name}")
                    result = measure(
                        job,
                        index,
                        checkpoint_meta(checkpoint),
                        sync=sync,
                        on_error="warn",
                        progress=progress,
                    )
                    failures += result is None
        advance(None)
    return failures


def _sweep(ns: argparse.Namespace, sweep: Path, runs: Sequence[Path]) -> int:
    from lsuite.config.probe_sync import start_processes
    from lsuite.results.jsonl import write_atomic

    if ns.pairs:
        return _sweep_pairs(ns, sweep, runs)
    summary: list[dict[str, Any]] = []
    sync = None
    for run in runs:
        entry: dict[str, Any] = {"run": str(run.relative_to(sweep))}
        try:
            job, checkpoints = _prepare(run, ns)
            if sync is None:
                sync, device = start_processes(job.cfg)
            job.module.to(device)
            failed = _measure_checkpoints(job, checkpoints, sync=sync, progress=ns.progress)
            entry.update(
                status="ok" if not failed else "probe failed",
                checkpoints=len(checkpoints),
                probes=[c.probe.name for c in job.callbacks],
                failed=failed,
            )
        except Exception as error:  # one broken run must not stop the sweep
            entry.update(status="error", error=f"{type(error).__name__}: {error}")
            log.warning("%s: %s", run, entry["error"])
        summary.append(entry)
    if sync is None or sync.is_zero:
        write_atomic(sweep / "probe_summary.json", json.dumps(summary, indent=2) + "\n")
        print(_summary_table(summary, sweep))
    return 0 if all(e["status"] == "ok" for e in summary) else 1


def _sweep_pairs(ns: argparse.Namespace, sweep: Path, runs: Sequence[Path]) -> int:
    from lsuite.config.probe_pairs import PairPoint, measure_pairs
    from lsuite.config.probe_sync import start_processes
    from lsuite.config.run_checkpoints import checkpoint_dir, find_checkpoints

    job, _ = _prepare(runs[0], ns)
    points = []
    for run in runs:
        found = find_checkpoints(checkpoint_dir(run, None), ns.ckpt or ["last"])
        label = str(run.relative_to(sweep))
        points += [
            PairPoint(label if len(found) == 1 else f"{label}/{c.path.stem}", c) for c in found
        ]
    sync, device = start_processes(job.cfg)
    job.module.to(device)
    matrices = measure_pairs(job, points, sweep, sync=sync, progress=ns.progress)
    if sync.is_zero:
        print(f"{PROG}: {len(points)} points, matrices {sorted(matrices)} in {sweep}")
    return 0


def _summary_table(summary: Sequence[dict[str, Any]], sweep: Path) -> str:
    lines = [f"{PROG}: {len(summary)} run(s) in {sweep} (summary: probe_summary.json)"]
    for entry in summary:
        detail = entry.get("error") or f"{entry['checkpoints']} checkpoint(s), {entry['probes']}"
        lines.append(f"  {entry['run']:<24} {entry['status']:<12} {detail}")
    return "\n".join(lines)


def _weights(ns: argparse.Namespace) -> int:
    from lsuite.config.probe_checkpoints import build_job, measure
    from lsuite.config.probe_sync import start_processes
    from lsuite.config.run_checkpoints import describe, read_checkpoint
    from lsuite.config.run_dir import compose_train
    from lsuite.config.weights_file import load_weights_file

    out = (ns.out or Path.cwd()).resolve()
    cfg = compose_train(ns.overrides)
    cfg.run_dir, cfg.run_name, cfg.overrides = str(out), "lsuite-probe", list(ns.overrides)
    job = build_job(cfg, out)
    load_weights_file(job.module, ns.weights)
    checkpoint = describe(ns.weights, read_checkpoint(ns.weights))
    sync, device = start_processes(job.cfg)
    job.module.to(device)
    failures = 0
    with checkpoint_progress(ns.progress and sync.is_zero, len(job.callbacks)) as advance:
        for index, callback in enumerate(job.callbacks):
            advance(f"{ns.weights.name}: {callback.probe.name}")
            meta = {
                "step": checkpoint.step,
                "epoch": checkpoint.epoch,
                "checkpoint": str(ns.weights.resolve()),
            }
            failures += measure(job, index, meta, sync=sync, on_error="warn") is None
        advance(None)
    if sync.is_zero:
        print(
            f"{PROG}: {ns.weights} x {len(job.callbacks)} probe(s) -> {out / 'probes'} "
            f"({failures} failed)"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    main()
