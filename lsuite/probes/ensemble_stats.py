"""Sums over data of ensemble statistics, and what follows from them (KL, cosines, embeddings).

Everything over data is a sum over samples (`batch_sums`), so the sums of all ranks added
together give the one-process numbers; the rest works on the reduced ``(M, M)`` matrices. The
2-D embedding of the members' predictions needs only their Gram matrix: PCA of the ``M``
prediction vectors (each the ``(N, C)`` probabilities of one member, flattened) is the
eigendecomposition of the double-centred Gram matrix (classical scaling), and t-SNE with the
Euclidean metric needs only the squared distances ``G_ii + G_jj - 2 G_ij``.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor


@dataclasses.dataclass(frozen=True)
class EnsembleSums:
    """Sums over samples of the ensemble statistics of ``M`` members (float64).

    Attributes:
        count: ``()`` number of samples (class targets).
        member_correct: ``(M,)`` samples each member classifies correctly (top-1).
        member_nll: ``(M,)`` summed ``-log p_m(y)``.
        ensemble_correct: ``()`` samples the ensemble (mean of probabilities) gets right.
        ensemble_nll: ``()`` summed ``-log mean_m p_m(y)``.
        disagree: ``(M, M)`` samples where the argmax of members ``i`` and ``j`` differ.
        cross: ``(M, M)`` summed ``sum_c p_i(c) log p_j(c)``.
        gram: ``(M, M)`` summed ``sum_c p_i(c) p_j(c)``.
    """

    count: Tensor
    member_correct: Tensor
    member_nll: Tensor
    ensemble_correct: Tensor
    ensemble_nll: Tensor
    disagree: Tensor
    cross: Tensor
    gram: Tensor

    def flat(self) -> Tensor:
        """Return every field in one ``(3 + 2M + 3M^2,)`` vector (one collective)."""
        return torch.cat([getattr(self, f.name).reshape(-1) for f in dataclasses.fields(self)])

    @classmethod
    def from_flat(cls, vector: Tensor, members: int) -> EnsembleSums:
        """Rebuild the sums from `flat`'s vector for ``members`` members."""
        m = members
        sizes = {"count": (), "member_correct": (m,), "member_nll": (m,)}
        sizes |= {"ensemble_correct": (), "ensemble_nll": ()}
        sizes |= {"disagree": (m, m), "cross": (m, m), "gram": (m, m)}
        out, start = {}, 0
        for name, shape in sizes.items():
            size = math.prod(shape)
            out[name] = vector[start : start + size].reshape(shape)
            start += size
        return cls(**out)

    @classmethod
    def zeros(cls, members: int, device: torch.device | None = None) -> EnsembleSums:
        """Return all-zero sums for ``members`` members (a rank without batches sends these)."""
        size = 3 + 2 * members + 3 * members * members
        return cls.from_flat(torch.zeros(size, dtype=torch.float64, device=device), members)

    def __add__(self, other: EnsembleSums) -> EnsembleSums:
        """Return the field-by-field sum."""
        return EnsembleSums.from_flat(self.flat() + other.flat(), self.member_correct.numel())


def batch_sums(log_probs: Tensor, targets: Tensor) -> EnsembleSums:
    """Return the sums of one batch from every member's log-probabilities.

    Args:
        log_probs: ``(M, N, C)`` log-softmax of each member's outputs (float64 preferred).
        targets: ``(N,)`` class indices.

    Returns:
        The batch's sums (float64).
    """
    log_probs = log_probs.double()
    probs = log_probs.exp()
    members = log_probs.shape[0]
    index = targets.reshape(1, -1, 1).expand(members, -1, 1)
    target_log_probs = log_probs.gather(2, index).squeeze(2)  # (M, N)
    predicted = log_probs.argmax(2)  # (M, N)
    ensemble = torch.logsumexp(log_probs, 0) - math.log(members)  # (N, C)
    return EnsembleSums(
        count=torch.tensor(float(targets.numel()), dtype=torch.float64, device=log_probs.device),
        member_correct=(predicted == targets.reshape(1, -1)).double().sum(1),
        member_nll=-target_log_probs.sum(1),
        ensemble_correct=(ensemble.argmax(1) == targets.reshape(-1)).double().sum(),
        ensemble_nll=-ensemble.gather(1, targets.reshape(-1, 1)).sum(),
        disagree=(predicted[:, None, :] != predicted[None, :, :]).double().sum(2),
        cross=torch.einsum("inc,jnc->ij", probs, log_probs),
        gram=torch.einsum("inc,jnc->ij", probs, probs),
    )


def kl_matrix(sums: EnsembleSums) -> Tensor:
    """Return ``(M, M)`` mean ``KL(p_i || p_j)`` over samples (row ``i``, column ``j``; >= 0)."""
    cross = sums.cross / sums.count
    return (cross.diagonal()[:, None] - cross).clamp_min(0.0)


def off_diagonal_mean(matrix: Tensor) -> float:
    """Return the mean of the entries ``i != j`` of a square matrix (nan for a 1 x 1 one)."""
    size = matrix.shape[0]
    if size < 2:
        return float("nan")
    mask = ~torch.eye(size, dtype=torch.bool, device=matrix.device)
    return float(matrix[mask].mean())


def cosine_matrix(vectors: Tensor) -> Tensor:
    """Return ``(M, M)`` cosine similarities of the rows of ``(M, P)`` vectors (nan for a 0 row)."""
    vectors = vectors.double()
    norms = torch.linalg.vector_norm(vectors, dim=1)
    return (vectors @ vectors.T) / (norms[:, None] * norms[None, :])


def pca_embedding(gram: Tensor) -> tuple[Tensor, Tensor]:
    """Return the first two principal coordinates of ``M`` vectors given their Gram matrix.

    Equal, up to the sign of each axis, to projecting the centred vectors on their first two
    principal directions (``torch.pca_lowrank`` / SVD of the ``(M, D)`` matrix). The sign is
    fixed so that each axis's entry of largest magnitude is positive.

    Args:
        gram: ``(M, M)`` inner products ``<x_i, x_j>``.

    Returns:
        ``((M, 2)`` coordinates, ``(2,)`` fraction of the total variance along each axis).
    """
    gram = gram.double()
    size = gram.shape[0]
    centre = torch.eye(size, dtype=gram.dtype, device=gram.device) - 1.0 / size
    centred = centre @ gram @ centre
    values, vectors = torch.linalg.eigh((centred + centred.T) / 2)
    values, vectors = values.flip(0).clamp_min(0.0), vectors.flip(1)
    coords = torch.zeros(size, 2, dtype=gram.dtype, device=gram.device)
    explained = torch.zeros(2, dtype=gram.dtype, device=gram.device)
    total = values.sum()
    for axis in range(min(2, size)):
        column = vectors[:, axis] * values[axis].sqrt()
        if column.abs().max() > 0 and column[column.abs().argmax()] < 0:
            column = -column
        coords[:, axis] = column
        explained[axis] = values[axis] / total if total > 0 else 0.0
    return coords, explained


def squared_distances(gram: Tensor) -> Tensor:
    """Return ``(M, M)`` squared Euclidean distances ``G_ii + G_jj - 2 G_ij`` (>= 0)."""
    diagonal = gram.diagonal()
    distances = (diagonal[:, None] + diagonal[None, :] - 2 * gram).clamp_min(0.0)
    return distances.fill_diagonal_(0.0)


def tsne_embedding(gram: Tensor, perplexity: float, seed: int) -> tuple[Tensor, float]:
    """Return a 2-D t-SNE of ``M`` vectors given their Gram matrix (scikit-learn).

    The same as ``TSNE(metric="euclidean", init="random")`` on the vectors themselves: t-SNE
    gets the squared Euclidean distances (what scikit-learn computes for that metric).

    Args:
        gram: ``(M, M)`` inner products, ``M >= 2``.
        perplexity: t-SNE's perplexity; lowered to ``M - 1`` when larger (it must be < ``M``).
        seed: the random state of the initial layout.

    Returns:
        ``((M, 2)`` coordinates, the perplexity used).
    """
    from sklearn.manifold import TSNE

    size = gram.shape[0]
    used = float(min(perplexity, size - 1))
    tsne = TSNE(
        n_components=2,
        perplexity=used,
        metric="precomputed",
        init="random",
        random_state=seed,
    )
    coords = tsne.fit_transform(squared_distances(gram.double()).cpu().numpy())
    return torch.as_tensor(coords, dtype=torch.float64), used
