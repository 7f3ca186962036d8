"""Extreme eigenvalues (and eigenvectors) of the loss Hessian by Lanczos."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from lsuite.errors import require
from lsuite.functional.params import Params
from lsuite.linalg.eigenpairs import Eigenpairs
from lsuite.linalg.operator_eigenpairs import (
    WHICH,
    Which,
    check_eigen_arguments,
    solve_extreme,
)
from lsuite.probes.base import Probe, ProbeData, ProbeResult, to_jsonable
from lsuite.probes.hessian_operator import HessianOperator
from lsuite.probes.point import ModelPoint
from lsuite.probes.progress import progress_total


@dataclasses.dataclass(frozen=True)
class HessianEigenvaluesResult(ProbeResult):
    """Extreme eigenvalues of the Hessian of the mean probe loss.

    Attributes:
        eigenvalues: the ``k`` largest eigenvalues, descending (empty for ``which="smallest"``).
        smallest: the ``k`` smallest (most negative) eigenvalues, ascending; None unless asked.
        residuals: ``||H v_i - lambda_i v_i||`` of ``eigenvalues`` (same order).
        smallest_residuals: residuals of ``smallest``; None unless asked.
        num_matvecs: Hessian-vector products used.
        converged: whether every residual reached the tolerance.
        eigenvectors: unit eigenvectors of ``eigenvalues`` as parameter dicts (same keys and
            shapes as the trainable parameters; sign arbitrary); None unless requested. Not
            written by `to_dict`.
        smallest_eigenvectors: the same for ``smallest``.
    """

    eigenvalues: list[float]
    smallest: list[float] | None
    residuals: list[float]
    smallest_residuals: list[float] | None
    num_matvecs: int
    converged: bool
    eigenvectors: tuple[Params, ...] | None = dataclasses.field(
        default=None, repr=False, compare=False, metadata={"json": False}
    )
    smallest_eigenvectors: tuple[Params, ...] | None = dataclasses.field(
        default=None, repr=False, compare=False, metadata={"json": False}
    )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-safe fields (eigenvectors are left out)."""
        return {
            f.name: to_jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.metadata.get("json", True)
        }

    def scalars(self) -> dict[str, float]:
        """Return ``top_eigenvalue``, ``eigenvalue_<i>``, ``smallest_eigenvalue[_<i>]``, cost."""
        out: dict[str, float] = {"num_matvecs": float(self.num_matvecs)}
        if self.eigenvalues:
            out["top_eigenvalue"] = self.eigenvalues[0]
        for i, value in enumerate(self.eigenvalues):
            out[f"eigenvalue_{i}"] = value
        if self.smallest:
            out["smallest_eigenvalue"] = self.smallest[0]
            for i, value in enumerate(self.smallest):
                out[f"smallest_eigenvalue_{i}"] = value
        return out


class HessianEigenvalues(Probe):
    """Measure the extreme eigenvalues of the Hessian of the mean probe loss.

    One Lanczos run serves both ends for ``which="both"``. Eigenvectors (as parameter dicts) are
    kept only with ``return_eigenvectors``, e.g. as plot directions for other probes.

    Args:
        k: eigenvalues per requested end.
        which: ``"largest"``, ``"smallest"`` (most negative) or ``"both"``.
        return_eigenvectors: keep the eigenvectors in the result.
        max_iter: most Lanczos steps (Hessian-vector products); ``max(100, 10 k)`` when None.
        tol: residual tolerance ``||H v - lambda v|| <= tol * ||H||``; the eigenvalue error is
            about ``tol**2 ||H||**2 / gap``.
        name: result and logger name (default ``"hessian_eigenvalues"``).

    Raises:
        ConfigError: for an argument out of range.
    """

    def __init__(
        self,
        k: int = 1,
        which: Which = "largest",
        return_eigenvectors: bool = False,
        max_iter: int | None = None,
        tol: float = 1e-4,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        check_eigen_arguments(k, max_iter, tol, None)
        require(which in WHICH, "which", which, f"one of {list(WHICH)}")
        require(
            isinstance(return_eigenvectors, bool),
            "return_eigenvectors",
            return_eigenvectors,
            "true or false",
        )
        self.k = k
        self.which: Which = which
        self.return_eigenvectors = return_eigenvectors
        self.max_iter = max_iter
        self.tol = tol

    def run(
        self, point: ModelPoint, data: ProbeData, *, generator: torch.Generator
    ) -> HessianEigenvaluesResult:
        """Compute the extreme eigenpairs on the primary split.

        Args:
            point: the frozen model.
            data: probe batches by split; the first is used.
            generator: CPU generator for the Lanczos start vector.

        Returns:
            The eigenvalues, residuals and cost (and eigenvectors if requested).

        Raises:
            ConfigError: when ``k`` exceeds the number of parameters.
        """
        source = next(iter(data.values()))
        operator = HessianOperator(point, source)
        require(self.k <= operator.size, "k", self.k, f"at most the {operator.size} parameters")
        ends = 2 if self.which == "both" else 1
        progress_total(ends * (self.max_iter or max(100, 10 * self.k)), "matvecs (at most)")
        found = solve_extreme(
            operator, self.k, self.which, self.max_iter, self.tol, generator, source.rank == 0
        )
        largest = found.largest if self.which != "smallest" else None
        smallest = found.smallest if self.which != "largest" else None

        def vectors(pairs: Eigenpairs | None) -> tuple[Params, ...] | None:
            if pairs is None or not self.return_eigenvectors:
                return None
            return tuple(operator.to_params(v) for v in pairs.vectors)

        return HessianEigenvaluesResult(
            eigenvalues=largest.values.tolist() if largest is not None else [],
            smallest=smallest.values.tolist() if smallest is not None else None,
            residuals=largest.residuals.tolist() if largest is not None else [],
            smallest_residuals=smallest.residuals.tolist() if smallest is not None else None,
            num_matvecs=found.num_matvecs,
            converged=found.converged,
            eigenvectors=vectors(largest),
            smallest_eigenvectors=vectors(smallest),
        )

    def __repr__(self) -> str:
        return f"HessianEigenvalues(k={self.k}, which={self.which!r}, name={self.name!r})"
