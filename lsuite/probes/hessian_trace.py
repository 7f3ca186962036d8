"""The trace of the loss Hessian, estimated by Hutch++ or Hutchinson with a standard error."""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch

from lsuite.errors import require
from lsuite.linalg.trace_estimators import hutchinson, hutchpp
from lsuite.probes.base import Probe, ProbeData, ProbeResult
from lsuite.probes.hessian_operator import HessianOperator
from lsuite.probes.point import ModelPoint
from lsuite.probes.progress import progress_total

Method = Literal["hutchpp", "hutchinson"]

_METHODS = ("hutchpp", "hutchinson")


@dataclasses.dataclass(frozen=True)
class HessianTraceResult(ProbeResult):
    """Estimated trace of the Hessian of the mean probe loss.

    Attributes:
        trace: the estimate of ``tr(H)`` (sum of the eigenvalues).
        stderr: its standard error (``nan`` with fewer than two random samples).
        num_matvecs: Hessian-vector products used.
        method: ``"hutchpp"`` or ``"hutchinson"``.
        converged: whether the relative standard error target stopped the estimate before the
            budget.
        per_layer: trace of each parameter tensor's diagonal block, by parameter name (they sum
            to ``trace``); None unless requested.
        per_layer_stderr: standard errors of ``per_layer``; None unless requested.
    """

    trace: float
    stderr: float
    num_matvecs: int
    method: str
    converged: bool
    per_layer: dict[str, float] | None = None
    per_layer_stderr: dict[str, float] | None = None

    def scalars(self) -> dict[str, float]:
        """Return ``trace``, ``stderr``, ``num_matvecs`` and ``per_layer/<name>`` traces."""
        out = {
            "trace": self.trace,
            "stderr": self.stderr,
            "num_matvecs": float(self.num_matvecs),
        }
        for name, value in (self.per_layer or {}).items():
            out[f"per_layer/{name}"] = value
        return out


class HessianTrace(Probe):
    """Estimate the trace of the Hessian of the mean probe loss, with its standard error.

    Random vectors are Rademacher, drawn from the probe's generator (the same on every rank).
    The estimate stops at ``num_matvecs`` products or once its relative standard error is below
    ``rel_stderr`` (after at least 8 random samples), whichever comes first; it never stops on a
    relative-change test. ``hutchpp`` (default) spends a third of the budget sketching the top
    eigenvectors, a third on their exact trace and the rest on Hutchinson in the complement; its
    error falls as ``1/m`` instead of ``1/sqrt(m)`` when a few eigenvalues dominate.

    Args:
        method: ``"hutchpp"`` (Meyer et al. 2021) or ``"hutchinson"``.
        num_matvecs: budget of Hessian-vector products (at least 3 for ``hutchpp``).
        rel_stderr: stop once ``stderr <= rel_stderr * |trace|``; None always uses the budget.
        block_size: Hessian-vector products computed per batched call.
        per_layer: also estimate the trace of each parameter tensor's diagonal block (free: the
            same products are used).
        name: result and logger name (default ``"hessian_trace"``).

    Raises:
        ConfigError: for an argument out of range.
    """

    def __init__(
        self,
        method: Method = "hutchpp",
        num_matvecs: int = 64,
        rel_stderr: float | None = 0.01,
        block_size: int = 8,
        per_layer: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        require(method in _METHODS, "method", method, f"one of {list(_METHODS)}")
        least = 3 if method == "hutchpp" else 1
        require(
            _is_int(num_matvecs) and num_matvecs >= least,
            "num_matvecs",
            num_matvecs,
            f"an int >= {least}" + (" for method 'hutchpp'" if least == 3 else ""),
        )
        require(
            rel_stderr is None or (_is_number(rel_stderr) and rel_stderr > 0),
            "rel_stderr",
            rel_stderr,
            "a float > 0 or null",
        )
        require(_is_int(block_size) and block_size >= 1, "block_size", block_size, "an int >= 1")
        require(isinstance(per_layer, bool), "per_layer", per_layer, "true or false")
        self.method: Method = method
        self.num_matvecs = num_matvecs
        self.rel_stderr = rel_stderr
        self.block_size = block_size
        self.per_layer = per_layer

    def run(
        self, point: ModelPoint, data: ProbeData, *, generator: torch.Generator
    ) -> HessianTraceResult:
        """Estimate ``tr(H)`` on the primary split.

        Args:
            point: the frozen model.
            data: probe batches by split; the first is used.
            generator: CPU generator of the random vectors.

        Returns:
            The estimate.
        """
        operator = HessianOperator(point, next(iter(data.values())))
        progress_total(self.num_matvecs, "matvecs")
        estimator = hutchpp if self.method == "hutchpp" else hutchinson
        estimate = estimator(
            operator.matmat,
            operator.size,
            num_matvecs=self.num_matvecs,
            generator=generator,
            dtype=operator.dtype,
            device=operator.device,
            rel_stderr=self.rel_stderr,
            block_size=self.block_size,
            block_sizes=operator.block_sizes if self.per_layer else None,
        )
        per_layer = per_layer_stderr = None
        if estimate.blocks is not None and estimate.block_stderr is not None:
            per_layer = dict(zip(operator.names, estimate.blocks.tolist(), strict=True))
            per_layer_stderr = dict(
                zip(operator.names, estimate.block_stderr.tolist(), strict=True)
            )
        return HessianTraceResult(
            trace=estimate.trace,
            stderr=estimate.stderr,
            num_matvecs=estimate.num_matvecs,
            method=self.method,
            converged=estimate.converged,
            per_layer=per_layer,
            per_layer_stderr=per_layer_stderr,
        )

    def __repr__(self) -> str:
        return (
            f"HessianTrace(method={self.method!r}, num_matvecs={self.num_matvecs}, "
            f"rel_stderr={self.rel_stderr}, name={self.name!r})"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
