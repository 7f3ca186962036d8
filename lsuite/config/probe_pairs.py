"""Measure the interpolation between every pair of N checkpoints; write barrier matrices."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from lsuite.callbacks import probe_points
from lsuite.config.probe_checkpoints import (
    ProbeJob,
    checkpoint_meta,
    load_checkpoint_into,
    measure,
    trainable_params,
)
from lsuite.config.run_checkpoints import Checkpoint, read_checkpoint
from lsuite.errors import ConfigError
from lsuite.functional.params import Params
from lsuite.pairs.matrix import pair_matrix, write_matrix_csv
from lsuite.session import Sync


@dataclasses.dataclass(frozen=True)
class PairPoint:
    """One of the N points of a pairs matrix.

    Attributes:
        label: its row / column name (a checkpoint's stem, or ``run/stem`` in a sweep).
        checkpoint: its file.
    """

    label: str
    checkpoint: Checkpoint


def interpolation_index(job: ProbeJob) -> int:
    """Return the position of the job's interpolation probe.

    Args:
        job: the job.

    Returns:
        The index into ``job.callbacks``.

    Raises:
        ConfigError: when the job has no interpolation probe.
    """
    for index, callback in enumerate(job.callbacks):
        if type(callback.probe).__name__ == "Interpolation":
            return index
    names = [c.probe.name for c in job.callbacks]
    raise ConfigError(f"--pairs: got probes {names}; expected an interpolation probe among them")


def measure_pairs(
    job: ProbeJob,
    points: Sequence[PairPoint],
    directory: Path,
    *,
    sync: Sync,
    progress: bool = False,
) -> dict[str, list[list[float]]]:
    """Measure the line between every pair ``i < j`` once; write one CSV matrix per barrier.

    The pair's records go to ``directory/pairs/probes/<name>.jsonl`` (``meta.checkpoint`` the end
    ``j``, ``meta.start_checkpoint`` the start ``i``); the matrices to
    ``directory/pairs_<split>_<loss|error>_barrier.csv`` and a heat-map
    ``directory/pairs_barriers.png``. With the probe's ``align`` / ``repair`` set, every curve
    kind (``weight``, ``weight_repair``, ...) gets its own matrices,
    ``pairs_<split>_<loss|error>_barrier_<kind>.csv``, and heat-map ``pairs_barriers_<kind>.png``.

    Args:
        job: the job (with an interpolation probe).
        points: the ``N >= 2`` points.
        directory: the run or sweep directory.
        sync: the ranks measuring together.
        progress: per-probe progress line.

    Returns:
        ``"<split>_loss_barrier"`` / ``"<split>_error_barrier"`` (and ``..._<kind>`` per aligned
        curve kind) -> symmetric ``(N, N)`` matrix with a zero diagonal.

    Raises:
        ConfigError: for fewer than 2 points or without an interpolation probe.
    """
    index = interpolation_index(job)
    if len(points) < 2:
        raise ConfigError(f"--pairs: got {len(points)} checkpoint(s); expected at least 2")
    starts: list[Params] = []
    for point in points:
        load_checkpoint_into(job, read_checkpoint(point.checkpoint.path))
        network = probe_points.network(job.module)  # the start's BatchNorm statistics too
        buffers = {n: b.detach().clone() for n, b in network.named_buffers()}
        starts.append({**buffers, **trainable_params(job.module)})
    values: dict[str, dict[tuple[int, int], float]] = {}
    for j, end in enumerate(points):
        if j == 0:
            continue
        load_checkpoint_into(job, read_checkpoint(end.checkpoint.path))
        for i in range(j):
            meta = {
                **checkpoint_meta(end.checkpoint),
                "start_checkpoint": str(points[i].checkpoint.path.resolve()),
                "pair": [points[i].label, end.label],
            }
            result = measure(
                job,
                index,
                meta,
                sync=sync,
                anchors={"start": starts[i]},
                progress=progress,
                directory=directory / "pairs",
            )
            for split, value in result.loss_barrier.items():
                values.setdefault(f"{split}_loss_barrier", {})[i, j] = value
            for split, value in (result.error_barrier or {}).items():
                values.setdefault(f"{split}_error_barrier", {})[i, j] = value
            for kind in result.curves:
                for split, value in result.aligned_loss_barrier.get(kind, {}).items():
                    values.setdefault(f"{split}_loss_barrier_{kind}", {})[i, j] = value
                for split, value in result.aligned_error_barrier.get(kind, {}).items():
                    values.setdefault(f"{split}_error_barrier_{kind}", {})[i, j] = value
    labels = [p.label for p in points]
    matrices = {name: pair_matrix(len(points), pairs) for name, pairs in values.items()}
    if sync.is_zero:
        for name, matrix in matrices.items():
            write_matrix_csv(directory / f"pairs_{name}.csv", labels, matrix)
        from lsuite.pairs.heatmap import plot_pair_heatmaps

        for kind, names in _by_kind(matrices).items():
            titles = {name.replace("_", " "): matrices[name] for name in names}
            suffix = "" if kind == "naive" else f"_{kind}"
            plot_pair_heatmaps(directory / f"pairs_barriers{suffix}.png", labels, titles)
    sync.wait()
    return matrices


def _by_kind(matrices: dict[str, list[list[float]]]) -> dict[str, list[str]]:
    """Group matrix names ``<split>_<loss|error>_barrier[_<kind>]`` by curve kind."""
    out: dict[str, list[str]] = {}
    for name in matrices:
        _, _, kind = name.partition("_barrier")
        out.setdefault(kind.removeprefix("_") or "naive", []).append(name)
    return out


__all__ = ["PairPoint", "interpolation_index", "measure_pairs"]
