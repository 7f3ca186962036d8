"""Accuracy, NLL and function-space diversity of an ensemble of points in weight space."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from lsuite.anchors.specs import parse_spec
from lsuite.errors import ConfigError, require
from lsuite.evaluate.accuracy import class_targets
from lsuite.functional.params import Params, flatten
from lsuite.probes.base import Probe, ProbeData, ProbeResult
from lsuite.probes.batch_norm_stats import BatchNormRecompute, batch_norm_statistics
from lsuite.probes.data_source import DataSource
from lsuite.probes.ensemble_members import collect_members, expand_specs
from lsuite.probes.ensemble_stats import (
    EnsembleSums,
    batch_sums,
    cosine_matrix,
    kl_matrix,
    off_diagonal_mean,
    pca_embedding,
    tsne_embedding,
)
from lsuite.probes.point import ModelPoint, as_params
from lsuite.probes.progress import progress_advance, progress_total

Embedding = Literal["pca", "tsne", "none"]
EMBEDDINGS = ("pca", "tsne", "none")


@dataclasses.dataclass(frozen=True)
class EnsembleResult(ProbeResult):
    """Members' and ensemble's accuracy and NLL, and how differently the members predict.

    The ensemble's prediction is the mean of the members' softmax probabilities. Means are over
    all probe samples of all ranks. Matrices are ``(M, M)`` over the members in ``labels`` order.

    Attributes:
        labels: ``(M,)`` member names: the spec (``epoch:N`` for a trajectory's points, a
            checkpoint path, ``current`` for the measured point, ``pointI`` for weights given
            in Python).
        groups: ``(M,)`` the trajectory each member belongs to (its run directory, or ``run``
            for the measured run), used to colour the embedding.
        member_accuracy: split -> ``(M,)`` top-1 accuracy of each member.
        member_nll: split -> ``(M,)`` mean ``-log p_m(y)`` (softmax cross-entropy).
        ensemble_accuracy: split -> top-1 accuracy of the mean prediction.
        ensemble_nll: split -> mean ``-log mean_m p_m(y)``.
        disagreement: split -> fraction of samples where members ``i`` and ``j`` predict
            different classes (argmax); symmetric, zero diagonal.
        kl: split -> mean ``KL(p_i || p_j)`` over samples: row ``i`` is the reference
            distribution, column ``j`` the approximation (``kl[i][j]``, not symmetric).
        symmetric_kl: split -> ``(kl + kl^T) / 2``.
        weight_cosine: cosine similarity of the flattened trainable weights.
        change_cosine: cosine similarity of the weight changes ``w_i - w_init`` from the one
            ``init`` point (nan for a member at init); None without ``init``.
        embedding: split -> ``(M, 2)`` coordinates of the members' predictions (the ``(N, C)``
            probabilities of each member, flattened, divided by ``sqrt(N)``); empty for
            ``embedding="none"``.
        explained_variance: split -> ``(2,)`` fraction of the predictions' variance on each
            PCA axis (empty for t-SNE).
        embedding_method: ``"pca"``, ``"tsne"`` or ``"none"``.
        perplexity: the t-SNE perplexity used (lowered for few members), else None.
        bn_statistics: BatchNorm statistics of the members: ``"none"``, ``"batch"``,
            ``"recomputed"`` (on ``bn_recompute_batches`` batches per member), ``"own"`` (each
            member's running statistics: a checkpoint's or observation's own, the measured
            point's for a member that brings none) or ``"point"`` (the measured point's for
            every member).
        num_samples: split -> class targets evaluated (all ranks).
    """

    labels: list[str]
    groups: list[str]
    member_accuracy: dict[str, list[float]]
    member_nll: dict[str, list[float]]
    ensemble_accuracy: dict[str, float]
    ensemble_nll: dict[str, float]
    disagreement: dict[str, list[list[float]]]
    kl: dict[str, list[list[float]]]
    symmetric_kl: dict[str, list[list[float]]]
    weight_cosine: list[list[float]]
    change_cosine: list[list[float]] | None
    embedding: dict[str, list[list[float]]]
    explained_variance: dict[str, list[float]]
    embedding_method: str
    perplexity: float | None
    bn_statistics: str
    num_samples: dict[str, int]

    def scalars(self) -> dict[str, float]:
        """Return ``num_members``, ``<split>_ensemble_accuracy``, ``<split>_disagreement``, ...

        Pairwise values are means over the pairs ``i != j`` (left out for one member); the
        mean of ``kl`` over those pairs is also the mean of ``symmetric_kl``.
        """
        out = {"num_members": float(len(self.labels))}
        pairs = len(self.labels) > 1
        for split in self.member_accuracy:
            out[f"{split}_ensemble_accuracy"] = self.ensemble_accuracy[split]
            out[f"{split}_ensemble_nll"] = self.ensemble_nll[split]
            member_accuracy = self.member_accuracy[split]
            member_nll = self.member_nll[split]
            out[f"{split}_member_accuracy"] = sum(member_accuracy) / len(member_accuracy)
            out[f"{split}_member_nll"] = sum(member_nll) / len(member_nll)
            if pairs:
                out[f"{split}_disagreement"] = off_diagonal_mean(
                    torch.tensor(self.disagreement[split], dtype=torch.float64)
                )
                out[f"{split}_kl"] = off_diagonal_mean(
                    torch.tensor(self.kl[split], dtype=torch.float64)
                )
        if pairs:
            out["weight_cosine"] = off_diagonal_mean(
                torch.tensor(self.weight_cosine, dtype=torch.float64)
            )
            if self.change_cosine is not None:
                out["change_cosine"] = off_diagonal_mean(
                    torch.tensor(self.change_cosine, dtype=torch.float64)
                )
        return out


class Ensemble(Probe):
    """Measure an ensemble of points: accuracy, NLL, disagreement, KL, cosines and an embedding.

    The members are the points of ``points`` and, with ``include_current``, the measured point;
    members with equal weights (up to float32 rounding) count once (the first one is kept).
    Each member is evaluated on every split; the ensemble predicts the mean of the members'
    softmax probabilities.
    Every quantity over data is a sum over samples reduced across ranks (`lsuite.probes.
    ensemble_stats`), and the embedding is computed from the reduced ``(M, M)`` Gram matrix of
    the predictions, so 2 ranks give the 1-process numbers (Fort, Hu, Lakshminarayanan 2019,
    "Deep Ensembles: A Loss Landscape Perspective").

    Standalone: ``Ensemble(init="init").measure(model, batches, points=[m1, m2], init=m0)``
    (modules or state dicts; ``init`` declared, then given). In training, ``points`` are specs:
    ``trajectory`` (the weights the run kept at every epoch end, not its initial weights),
    ``epoch:N``, ``step:N``, checkpoint files, run directories (``RUN_DIR[:last|best|step:N]``),
    or glob patterns of checkpoint files (``multirun/seeds/*/checkpoints/step*.ckpt``, expanded
    in sorted order).

    Args:
        points: the member specs (a list, or one spec).
        include_current: add the measured point itself (label ``current``).
        init: spec of the initial weights for ``change_cosine`` (``init`` in training; a file
            or run spec in lsuite-probe), or None to skip the weight changes.
        groups: the trajectory label of each spec of ``points`` (same length); None: the run
            directory of a file or run spec, ``run`` for the measured run's own points.
        embedding: ``"pca"`` (default), ``"tsne"`` (scikit-learn) or ``"none"``.
        perplexity: t-SNE's perplexity (lowered to ``M - 1`` for few members).
        family_points: when > 0 and the measured network carries a curve or simplex
            (``module=curve`` / ``module=simplex``, `lsuite.functional.curves.find_family`),
            add that many of its points as members: evenly spaced ``t`` from 0 to 1 on a curve
            (labels ``t=0.25``), uniform draws from the generator on a simplex (``sampleI``); the
            group is ``family``. Other networks add none.
        bn_recompute_batches: when > 0, recompute each member's BatchNorm statistics on that
            many training probe batches per rank; when 0, each member uses its own running
            statistics (a checkpoint's, an observation's), or the measured point's without.
        name: probe name (default ``"ensemble"``).

    Raises:
        ConfigError: for an argument out of range, a missing file, or a glob matching nothing.
    """

    point_buffers = True
    """Members reach `run` with their own buffers (BatchNorm statistics) where they have them."""

    def __init__(
        self,
        points: str | Sequence[str] = ("trajectory",),
        include_current: bool = True,
        init: str | None = None,
        groups: Sequence[str] | None = None,
        embedding: Embedding = "pca",
        perplexity: float = 5.0,
        family_points: int = 0,
        bn_recompute_batches: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        specs = [points] if isinstance(points, str) else list(points or [])
        labels = list(groups) if groups is not None else None
        require(
            labels is None or len(labels) == len(specs),
            "groups",
            groups,
            f"one label per spec of points ({len(specs)})",
        )
        self.points, self.groups = expand_specs(specs, labels)
        require(isinstance(include_current, bool), "include_current", include_current, "a bool")
        self.include_current = include_current
        self.init = None if init is None else parse_spec(init, "init").text
        require(embedding in EMBEDDINGS, "embedding", embedding, f"one of {list(EMBEDDINGS)}")
        self.embedding: Embedding = embedding
        require(
            isinstance(perplexity, (int, float)) and perplexity > 0,
            "perplexity",
            perplexity,
            "a number > 0",
        )
        self.perplexity = float(perplexity)
        require(
            isinstance(family_points, int)
            and not isinstance(family_points, bool)
            and family_points >= 0,
            "family_points",
            family_points,
            "an int >= 0",
        )
        self.family_points = family_points
        require(
            bool(self.points) or include_current or family_points > 0,
            "points",
            points,
            "at least one spec when include_current is false and family_points is 0",
        )
        require(
            isinstance(bn_recompute_batches, int) and bn_recompute_batches >= 0,
            "bn_recompute_batches",
            bn_recompute_batches,
            "an int >= 0",
        )
        self.bn_recompute_batches = bn_recompute_batches

    def point_specs(self) -> dict[str, str | list[str]]:
        """Return ``{"points": [...]}`` and, with an ``init`` spec, ``{"init": init}``."""
        specs: dict[str, str | list[str]] = {"points": list(self.points)}
        if self.init is not None:
            specs["init"] = self.init
        return specs

    def run(
        self,
        point: ModelPoint,
        data: ProbeData,
        *,
        generator: torch.Generator,
        points: Sequence[Any] | None = None,
        init: Params | None = None,
    ) -> EnsembleResult:
        """Evaluate every member on every split and compare them.

        Args:
            point: the measured point (a member with ``include_current``).
            data: probe batches by split; every split is evaluated.
            generator: the t-SNE seed is drawn from it (nothing else is random).
            points: the members, resolved from the ``points`` specs in order (parameters with
                the keys of ``point.params``; a spec ``trajectory`` gives a list of
                observations).
            init: the initial weights for ``change_cosine``, or None.

        Returns:
            The ensemble's result.

        Raises:
            ConfigError: without members, for outputs that are not class logits, or for
                ``bn_recompute_batches`` without training data.
        """
        found = collect_members(
            point,
            points,
            self.points,
            self.groups,
            include_current=self.include_current,
            family_points=self.family_points,
            generator=generator,
        )
        labels, groups, members, own = found.labels, found.groups, found.params, found.buffers
        if not members:
            raise ConfigError(f"{self.name}: got no members (points: {self.points!r})")
        buffers = self._buffers(point, data, members, own)
        progress_total(len(members) * sum(len(s) for s in data.values()), "member batches")
        sums = {
            split: _split_sums(point, source, members, buffers) for split, source in data.items()
        }
        vectors = torch.stack([flatten(m).double() for m in members])
        change = None
        if init is not None:
            change = cosine_matrix(vectors - flatten(as_params(init, point.params)).double())
        embedding, explained, perplexity = self._embed(sums, generator)
        return EnsembleResult(
            labels=labels,
            groups=groups,
            member_accuracy={k: (s.member_correct / s.count).tolist() for k, s in sums.items()},
            member_nll={k: (s.member_nll / s.count).tolist() for k, s in sums.items()},
            ensemble_accuracy={k: float(s.ensemble_correct / s.count) for k, s in sums.items()},
            ensemble_nll={k: float(s.ensemble_nll / s.count) for k, s in sums.items()},
            disagreement={k: (s.disagree / s.count).tolist() for k, s in sums.items()},
            kl={k: kl_matrix(s).tolist() for k, s in sums.items()},
            symmetric_kl={k: _symmetric(kl_matrix(s)).tolist() for k, s in sums.items()},
            weight_cosine=cosine_matrix(vectors).tolist(),
            change_cosine=None if change is None else change.tolist(),
            embedding=embedding,
            explained_variance=explained,
            embedding_method=self.embedding,
            perplexity=perplexity,
            bn_statistics=_statistics(point, self.bn_recompute_batches > 0, own),
            num_samples={k: int(s.count) for k, s in sums.items()},
        )

    def _buffers(
        self,
        point: ModelPoint,
        data: ProbeData,
        members: Sequence[Params],
        own: Sequence[Params],
    ) -> list[Params]:
        """Return each member's buffers: recomputed, its own, or else the measured point's."""
        if self.bn_recompute_batches == 0:
            return [{**point.buffers, **o} for o in own]
        if "train" not in data or point.bn_mode == "train":
            raise ConfigError(
                f"bn_recompute_batches: got {self.bn_recompute_batches}; expected 0 unless the "
                "probe gets 'train' data and runs with bn_mode 'eval'"
            )
        recompute = BatchNormRecompute(point, data["train"], self.bn_recompute_batches)
        return [recompute(m) for m in members]

    def _embed(
        self, sums: dict[str, EnsembleSums], generator: torch.Generator
    ) -> tuple[dict[str, list[list[float]]], dict[str, list[float]], float | None]:
        """Return the embedding and explained variance of every split (see the result)."""
        embedding: dict[str, list[list[float]]] = {}
        explained: dict[str, list[float]] = {}
        perplexity = None
        if self.embedding == "none":
            return embedding, explained, perplexity
        seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
        for split, s in sums.items():
            gram = s.gram / s.count
            if self.embedding == "tsne" and gram.shape[0] > 1:
                coords, perplexity = tsne_embedding(gram, self.perplexity, seed)
            elif self.embedding == "tsne":
                coords = torch.zeros(1, 2, dtype=torch.float64)
            else:
                coords, ratio = pca_embedding(gram)
                explained[split] = ratio.tolist()
            embedding[split] = coords.tolist()
        return embedding, explained, perplexity

    def __repr__(self) -> str:
        return (
            f"Ensemble(points={self.points!r}, include_current={self.include_current}, "
            f"init={self.init!r}, embedding={self.embedding!r}, name={self.name!r})"
        )


def _split_sums(
    point: ModelPoint, source: DataSource, members: Sequence[Params], buffers: Sequence[Params]
) -> EnsembleSums:
    """Return the sums over every sample of ``source`` on all ranks (one collective)."""
    total = EnsembleSums.zeros(len(members), point.device)
    with torch.no_grad():
        for inputs, targets in source:
            outputs = [
                point.outputs(inputs, m, b).double() for m, b in zip(members, buffers, strict=True)
            ]
            logits, classes = _class_logits(outputs, targets)
            total = total + batch_sums(torch.log_softmax(logits, dim=-1), classes)
            progress_advance(len(members))
    return EnsembleSums.from_flat(source.sum(total.flat()), len(members))


def _class_logits(outputs: Sequence[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(M, N, C)`` logits and ``(N,)`` class targets of one batch."""
    classes = class_targets(outputs[0], targets)
    if classes is None:
        raise ConfigError(
            f"ensemble: got outputs of shape {tuple(outputs[0].shape)} for targets of shape "
            f"{tuple(targets.shape)} ({targets.dtype}); expected class logits (B, C) or "
            "(B, C, ...) with integer class targets"
        )
    stacked = torch.stack(list(outputs))  # (M, B, C, ...)
    if stacked.dim() > 3 or classes.dim() > 1:
        stacked = stacked.movedim(2, -1).reshape(stacked.shape[0], -1, stacked.shape[2])
    return stacked, classes.reshape(-1)


def _statistics(point: ModelPoint, recomputed: bool, own: Sequence[Params]) -> str:
    """Say which BatchNorm statistics the members used (see `EnsembleResult.bn_statistics`)."""
    found = batch_norm_statistics(point, recomputed)
    return "own" if found == "point" and any(own) else found


def _symmetric(matrix: Tensor) -> Tensor:
    return (matrix + matrix.T) / 2
