"""The end-of-fit walk along a trained subspace: validation loss and accuracy at labelled points.

`lsuite.model.subspace.Subspace` calls `walk_subspace` and `publish_walk` when fitting ends; the
points are those of `lsuite.model.subspace_evaluation.evaluation_points` (a line's values of
alpha; a simplex's vertices, edge midpoints and centre).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from lsuite.functional.params import Params
from lsuite.model.subspace_evaluation import evaluation_points, evaluation_totals, write_evaluation

if TYPE_CHECKING:
    from lsuite.model.subspace import Subspace

log = logging.getLogger("lsuite")


def walk_subspace(module: Subspace, loaders: Any) -> list[dict[str, Any]]:
    """Return the validation loss and accuracy at every labelled point, summed over ranks.

    The network is in eval mode meanwhile (its mode is restored). With BatchNorm layers the
    statistics are recomputed at every point first (`Subspace.batch_norm_at`).

    Args:
        module: the subspace, in a Trainer (its strategy reduces the sums).
        loaders: the validation loader or a list of them.

    Returns:
        One row per point: ``point`` (label), ``weights`` (``K`` coordinates), ``val_loss``
        (mean over the data) and ``val_acc``.
    """
    loaders = list(loaders) if isinstance(loaders, list | tuple) else [loaders]
    was_training = module.net.training
    module.net.eval()
    rows = []
    points = evaluation_points(module.num_vertices, module.eval_points)
    try:
        with torch.no_grad():
            buffers: list[Params | None] = (
                list(module.batch_norm_at([torch.tensor(w) for _, w in points]))
                if module._has_batch_norm
                else [None] * len(points)
            )
            for (label, weights), point_buffers in zip(points, buffers, strict=True):
                params = module.point(torch.tensor(weights))
                batches = _batches(module, loaders)
                totals = evaluation_totals(
                    lambda x, p=params, b=point_buffers: module.forward_at(p, x, b), batches
                )
                totals = module.trainer.strategy.reduce(totals.to(module.device), reduce_op="sum")
                loss, acc = (totals[0] / totals[2]).item(), (totals[1] / totals[2]).item()
                rows.append({"point": label, "weights": weights, "val_loss": loss, "val_acc": acc})
    finally:
        module.net.train(was_training)
    return rows


def _batches(module: Subspace, loaders: list) -> Iterable[tuple[Tensor, Tensor]]:
    return (
        module.transfer_batch_to_device(batch, module.device, 0)[:2]
        for loader in loaders
        for batch in loader
    )


@rank_zero_only
def publish_walk(module: Subspace, rows: list[dict[str, Any]]) -> None:
    """Log ``subspace/<point>/val_loss`` and ``.../val_acc``; write ``subspace.json`` (rank 0).

    Args:
        module: the subspace, in a Trainer (its loggers and run directory).
        rows: the rows of `walk_subspace`.
    """
    metrics = {}
    for row in rows:
        metrics[f"subspace/{row['point']}/val_loss"] = row["val_loss"]
        metrics[f"subspace/{row['point']}/val_acc"] = row["val_acc"]
    for logger in module.loggers:
        logger.log_metrics(metrics, step=module.global_step)
    text = ", ".join(f"{r['point']} {r['val_acc']:.3f}" for r in rows)
    if module._has_batch_norm:
        text += f" (BatchNorm statistics recomputed at each point on {module.bn_batches} batches)"
    log.info("subspace: validation accuracy along the subspace: %s", text)
    run_dir = Path(module.trainer.default_root_dir)
    if run_dir.is_dir():
        bn = ("recomputed", module.bn_batches) if module._has_batch_norm else ("none", None)
        write_evaluation(run_dir, rows, *bn)
