"""Per-layer Frobenius and spectral norms of weight matrices, and of their distance from init."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from torch import Tensor


def layer_matrices(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Return every weight with two or more dimensions as a matrix ``(out, in * k ...)``.

    These are the "layers" of Jiang et al. (2019): linear weights as they are, convolution
    kernels ``(C_out, C_in, k_h, k_w)`` reshaped to ``(C_out, C_in k_h k_w)``. Biases and
    normalisation scales (one-dimensional) are left out.

    Args:
        params: parameters by name.

    Returns:
        ``name -> (rows, columns)`` matrices in float64, in the order of ``params``.
    """
    return {
        k: v.detach().reshape(v.shape[0], -1).double() for k, v in params.items() if v.dim() > 1
    }


@dataclasses.dataclass(frozen=True)
class LayerNorms:
    """Norms of each layer's weight matrix ``W_i`` and of ``W_i - W_i^0``.

    Attributes:
        names: the layers (parameter names), ``d`` of them.
        frobenius: ``||W_i||_F`` per layer.
        spectral: ``||W_i||_2`` (largest singular value) per layer.
        distance_frobenius: ``||W_i - W_i^0||_F`` per layer.
        distance_spectral: ``||W_i - W_i^0||_2`` per layer.
    """

    names: list[str]
    frobenius: list[float]
    spectral: list[float]
    distance_frobenius: list[float]
    distance_spectral: list[float]


def layer_norms(params: Mapping[str, Tensor], init: Mapping[str, Tensor]) -> LayerNorms:
    """Return the Frobenius and spectral norms of every layer and of its change since init.

    Spectral norms are ``torch.linalg.matrix_norm(ord=2)`` of the matrices of `layer_matrices`
    (for convolutions the norm of the reshaped kernel, as Jiang et al. do, not of the
    convolution operator).

    Args:
        params: the weights ``w``.
        init: the initial weights ``w^0`` (same keys and shapes as ``params``).

    Returns:
        The per-layer norms.
    """
    now = layer_matrices(params)
    start = layer_matrices({k: init[k] for k in now})
    names = list(now)

    def norms(matrices: list[Tensor], order: str | int) -> list[float]:
        return [float(torch.linalg.matrix_norm(m, ord=order)) for m in matrices]

    differences = [now[k] - start[k].to(now[k].device) for k in names]
    return LayerNorms(
        names=names,
        frobenius=norms([now[k] for k in names], "fro"),
        spectral=norms([now[k] for k in names], 2),
        distance_frobenius=norms(differences, "fro"),
        distance_spectral=norms(differences, 2),
    )
