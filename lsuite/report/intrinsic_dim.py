"""The intrinsic dimension of a random-subspace sweep: accuracy against d, d_int90, its figure.

Li, Farkhoor, Liu and Yosinski 2018: ``d_int90`` is the smallest subspace dimension ``d`` whose
(mean) accuracy reaches 90% of the full model's; their headline numbers use 90% of an accuracy
of 1 instead (90% absolute). Both are computed here.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from lsuite.errors import ConfigError
from lsuite.report.runs import Run, find_runs, parse_value
from lsuite.results.jsonl import write_atomic

FIGURE = "intrinsic_dimension.png"
SUMMARY = "intrinsic_dimension.json"


@dataclass(frozen=True)
class IntrinsicDimension:
    """Accuracy against subspace dimension and the two d_int conventions.

    Attributes:
        metric: the metric read from each run (``test/acc``).
        dims: the dimensions ``d``, ascending.
        means: the mean metric at each ``d`` (over seeds or repeats).
        values: every run's value at each ``d``.
        baseline: the full model's metric (mean of its runs), or None when unknown.
        fraction: the threshold fraction (0.9).
        relative: smallest ``d`` whose mean reaches ``fraction * baseline`` (None: none does, or
            no baseline).
        absolute: smallest ``d`` whose mean reaches ``fraction`` (None: none does).
    """

    metric: str
    dims: list[int]
    means: list[float]
    values: list[list[float]]
    baseline: float | None
    fraction: float
    relative: int | None
    absolute: int | None


def intrinsic_dimension(
    points: Mapping[int, Sequence[float]],
    baseline: float | None,
    fraction: float = 0.9,
    metric: str = "test/acc",
) -> IntrinsicDimension:
    """Return the smallest ``d`` reaching ``fraction`` of ``baseline``, and of 1.

    Args:
        points: the metric's values (one per run) by subspace dimension ``d``.
        baseline: the full model's metric, or None (then only the absolute threshold).
        fraction: the threshold fraction, in (0, 1].
        metric: the metric's name, for the record.

    Returns:
        The curve and both thresholds' dimensions.

    Raises:
        ConfigError: when ``fraction`` is outside (0, 1] or ``points`` is empty.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction: got {fraction!r}; expected a number in (0, 1]")
    if not points:
        raise ConfigError("points: got none; expected the metric at one d or more")
    dims = sorted(points)
    values = [[float(v) for v in points[d]] for d in dims]
    means = [statistics.fmean(v) for v in values]

    def first(level: float) -> int | None:
        return next((d for d, m in zip(dims, means, strict=True) if m >= level), None)

    relative = None if baseline is None else first(fraction * baseline)
    return IntrinsicDimension(
        metric, dims, means, values, baseline, fraction, relative, first(fraction)
    )


def from_runs(
    runs: Sequence[Run],
    key: str = "module.dim",
    metric: str = "test/acc",
    baseline: float | None = None,
    fraction: float = 0.9,
) -> IntrinsicDimension:
    """Read the curve from a sweep: runs overriding ``key`` are its points.

    Completed runs without ``key`` among their overrides (the full model, e.g. a run with
    ``module=classifier`` in the same directory) give the baseline when ``baseline`` is None.

    Args:
        runs: the sweep's runs.
        key: the override holding ``d``.
        metric: the final metric to read.
        baseline: the full model's metric; None: from the runs without ``key``.
        fraction: the threshold fraction.

    Returns:
        The intrinsic dimension.

    Raises:
        ConfigError: when no completed run overrides ``key`` with an int and has ``metric``.
    """
    points: dict[int, list[float]] = {}
    full: list[float] = []
    for run in runs:
        if run.status != "completed" or metric not in run.metrics:
            continue
        values = dict(o.split("=", 1) for o in run.overrides if "=" in o)
        if key in values:
            d = parse_value(values[key])
            if isinstance(d, int) and not isinstance(d, bool):
                points.setdefault(d, []).append(run.metrics[metric])
        else:
            full.append(run.metrics[metric])
    if not points:
        raise ConfigError(
            f"--intrinsic-dim: no completed run overrides {key} with an int and has {metric}"
        )
    if baseline is None and full:
        baseline = statistics.fmean(full)
    return intrinsic_dimension(points, baseline, fraction, metric)


def plot(result: IntrinsicDimension, path: Path, key: str = "module.dim") -> Path:
    """Draw the metric against ``d`` (log axis), the thresholds and the two d_int90 marks.

    Returns:
        ``path``, written atomically.
    """
    matplotlib.use("Agg")
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    for d, values in zip(result.dims, result.values, strict=True):
        axes.scatter([d] * len(values), values, color="0.6", s=12, zorder=2)
    axes.plot(result.dims, result.means, "o-", color="C0", label=f"{result.metric} (mean)")
    percent = f"{100 * result.fraction:g}%"
    if result.baseline is not None:
        level = result.fraction * result.baseline
        axes.axhline(result.baseline, color="C2", linestyle=":", label="full model")
        axes.axhline(level, color="C1", linestyle="--", label=f"{percent} of the full model")
        if result.relative is not None:
            axes.axvline(result.relative, color="C1", alpha=0.6)
            axes.annotate(
                f"d_int90 = {result.relative}", (result.relative, level), color="C1",
                xytext=(4, -12), textcoords="offset points",
            )  # fmt: skip
    axes.axhline(result.fraction, color="C3", linestyle="--", label=f"{percent} absolute")
    if result.absolute is not None:
        axes.axvline(result.absolute, color="C3", alpha=0.6)
        axes.annotate(
            f"d_int90 = {result.absolute} (absolute)", (result.absolute, result.fraction),
            color="C3", xytext=(4, 4), textcoords="offset points",
        )  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel(f"subspace dimension d ({key})")
    axes.set_ylabel(result.metric)
    axes.legend(fontsize=8, loc="lower right")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return write_atomic(path, buffer.getvalue())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--intrinsic-dim [KEY]``, ``--intrinsic-metric`` and ``--intrinsic-baseline``."""
    parser.add_argument(
        "--intrinsic-dim",
        nargs="?",
        const="module.dim",
        default=None,
        metavar="KEY",
        help="plot the metric against the subspace dimension KEY (default module.dim) and mark "
        "d_int90, relative to the full model and absolute",
    )
    parser.add_argument("--intrinsic-metric", default="test/acc", metavar="METRIC")
    parser.add_argument(
        "--intrinsic-baseline",
        default=None,
        metavar="VALUE|RUN_DIR",
        help="the full model's metric, or a run (or sweep) directory of it; default: the runs "
        "of the sweep without KEY",
    )


def write_from_arguments(runs: Sequence[Run], out: Path, args: argparse.Namespace) -> list[str]:
    """With ``--intrinsic-dim``, write the figure and summary; return the lines to print.

    Args:
        runs: the sweep's runs.
        out: the report directory.
        args: the parsed `add_arguments` options.

    Returns:
        The lines to print (none without ``--intrinsic-dim``).

    Raises:
        ConfigError: for a baseline that is neither a number nor a directory of runs with the
            metric.
    """
    if args.intrinsic_dim is None:
        return []
    metric = args.intrinsic_metric
    result = from_runs(runs, args.intrinsic_dim, metric, _baseline(args.intrinsic_baseline, metric))
    figure = plot(result, out / FIGURE, args.intrinsic_dim)
    write_atomic(out / SUMMARY, json.dumps(asdict(result), indent=1) + "\n")
    relative = (
        "no full-model baseline"
        if result.baseline is None
        else f"d_int90 = {result.relative} (90% of the full model's {result.baseline:.4f})"
    )
    return [
        f"  intrinsic dimension ({metric} vs {args.intrinsic_dim}): {relative}; "
        f"d_int90 absolute = {result.absolute}",
        f"  intrinsic dimension: {figure} (and {out / SUMMARY})",
    ]


def _baseline(text: str | None, metric: str) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    path = Path(text)
    values = [r.metrics[metric] for r in find_runs(path) if metric in r.metrics]
    if not path.is_dir() or not values:
        raise ConfigError(
            f"--intrinsic-baseline: got {text!r}; expected a number or a run directory with "
            f"{metric}"
        )
    return statistics.fmean(values)
