"""The validation loss and accuracy of a trained subspace at labelled points, and their record."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lsuite.results.jsonl import write_atomic

EVALUATION_FILE = "subspace.json"
"""Written into the run directory at the end of fitting: validation loss and accuracy per point
(``points``), and which BatchNorm statistics were used (``batch_norm``: ``recomputed`` at each
point on ``bn_batches`` training batches, or ``none``)."""


def evaluation_points(num_vertices: int, num_points: int) -> list[tuple[str, list[float]]]:
    """Return the labelled barycentric points evaluated at the end of fitting.

    A line: ``num_points`` values of alpha from 0 to 1 (``alpha=0.50`` is the midpoint). A
    simplex: each vertex, each edge's midpoint and the centre.

    Args:
        num_vertices: ``K``.
        num_points: values of alpha on a line (>= 2).

    Returns:
        ``(label, (K,) coordinates)`` pairs.
    """
    if num_vertices == 2:
        alphas = torch.linspace(0, 1, num_points, dtype=torch.float64).tolist()
        return [(f"alpha={a:.2f}", [1 - a, a]) for a in alphas]
    eye = torch.eye(num_vertices, dtype=torch.float64)
    points = [(f"vertex={k}", eye[k].tolist()) for k in range(num_vertices)]
    for i, j in itertools.combinations(range(num_vertices), 2):
        points.append((f"edge={i}-{j}", ((eye[i] + eye[j]) / 2).tolist()))
    points.append(("center", [1 / num_vertices] * num_vertices))
    return points


def evaluation_totals(
    forward: Callable[[Tensor], Tensor], batches: Iterable[tuple[Tensor, Tensor]]
) -> Tensor:
    """Return the ``(3,)`` float64 sums of cross-entropy, correct predictions and samples.

    Args:
        forward: ``(B, ...)`` inputs to ``(B, C)`` logits (the network at one point).
        batches: ``(inputs, targets)`` on the network's device.

    Returns:
        ``[sum of losses, number correct, number of samples]`` over all batches (this rank's).
    """
    totals: Tensor | None = None
    for inputs, targets in batches:
        logits = forward(inputs)
        loss = F.cross_entropy(logits, targets, reduction="sum")
        correct = (logits.argmax(dim=1) == targets).sum()
        count = torch.tensor(len(targets), dtype=torch.float64, device=logits.device)
        row = torch.stack([loss.double(), correct.double(), count])
        totals = row if totals is None else totals + row
    return torch.zeros(3, dtype=torch.float64) if totals is None else totals


def write_evaluation(
    run_dir: Path, rows: list[dict[str, Any]], batch_norm: str, bn_batches: int | None
) -> None:
    """Write `EVALUATION_FILE` into ``run_dir`` (atomically).

    Args:
        run_dir: the run directory.
        rows: one ``{"point", "weights", "val_loss", "val_acc"}`` dict per point.
        batch_norm: ``"recomputed"`` or ``"none"``.
        bn_batches: the training batches of each recomputation, or None.
    """
    record = {"points": rows, "batch_norm": batch_norm, "bn_batches": bn_batches}
    write_atomic(run_dir / EVALUATION_FILE, json.dumps(record, indent=1) + "\n")
