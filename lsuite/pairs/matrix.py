"""A symmetric N x N matrix of pair values with a zero diagonal, written as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from lsuite.errors import ConfigError
from lsuite.results.jsonl import write_atomic


def pair_matrix(size: int, values: Mapping[tuple[int, int], float]) -> list[list[float]]:
    """Return the symmetric ``(N, N)`` matrix of ``values`` measured once per pair ``i < j``.

    Args:
        size: ``N``, the number of points.
        values: ``(i, j) -> value`` for every ``0 <= i < j < N``.

    Returns:
        Rows of floats: ``m[i][j] = m[j][i] = values[i, j]`` and ``m[i][i] = 0``.

    Raises:
        ConfigError: when a pair is missing or an index is out of range.
    """
    matrix = [[0.0] * size for _ in range(size)]
    for i in range(size):
        for j in range(i + 1, size):
            if (i, j) not in values:
                raise ConfigError(f"pairs: no value for pair ({i}, {j}) of {size} points")
            matrix[i][j] = matrix[j][i] = float(values[i, j])
    extra = [p for p in values if not (0 <= p[0] < p[1] < size)]
    if extra:
        raise ConfigError(f"pairs: got pair {extra[0]}; expected 0 <= i < j < {size}")
    return matrix


def matrix_csv(labels: Sequence[str], matrix: Sequence[Sequence[float]]) -> str:
    """Return the matrix as CSV: a header ``point,<label>...`` then one row per label."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["point", *labels])
    for label, row in zip(labels, matrix, strict=True):
        writer.writerow([label, *(repr(float(v)) for v in row)])
    return out.getvalue()


def write_matrix_csv(path: Path, labels: Sequence[str], matrix: Sequence[Sequence[float]]) -> Path:
    """Write `matrix_csv` to ``path`` atomically and return the path."""
    return write_atomic(path, matrix_csv(labels, matrix))


def read_matrix_csv(path: Path) -> tuple[list[str], list[list[float]]]:
    """Return ``(labels, matrix)`` of a file written by `write_matrix_csv`."""
    rows = list(csv.reader(Path(path).read_text(encoding="utf-8").splitlines()))
    labels = rows[0][1:]
    return labels, [[float(v) for v in row[1:]] for row in rows[1:]]


__all__ = ["matrix_csv", "pair_matrix", "read_matrix_csv", "write_matrix_csv"]
