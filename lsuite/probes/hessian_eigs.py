"""Extreme eigenvalues (and eigenvectors) of the loss Hessian by Lanczos."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

import torch
from torch import Tensor

from lsuite.errors import require
from lsuite.functional.params import Params
from lsuite.linalg.eigenpairs import Eigenpairs, ExtremeEigenpairs, extreme_eigenpairs
from lsuite.linalg.operator import SymmetricOperator
from lsuite.probes.base import Probe, ProbeData, ProbeResult, to_jsonable
from lsuite.probes.hessian_operator import HessianOperator
from lsuite.probes.point import ModelPoint

log = logging.getLogger(__name__)

End = Literal["largest", "smallest"]
Which = Literal["largest", "smallest", "both"]

_WHICH = ("largest", "smallest", "both")


def default_max_iter(k: int) -> int:
    """Return the default Lanczos step limit for ``k`` eigenpairs per requested end."""
    return max(100, 10 * k)


def hessian_eigenpairs(
    operator: SymmetricOperator,
    k: int,
    *,
    generator: torch.Generator,
    which: End = "largest",
    max_iter: int | None = None,
    tol: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """Return ``k`` extreme eigenpairs of a symmetric operator by Lanczos.

    Lanczos (full reorthogonalisation) runs from a Gaussian start vector drawn from
    ``generator`` until every requested pair has ``||H v - lambda v|| <= tol * ||H||`` or
    ``max_iter`` products were used (a warning is logged then).

    Args:
        operator: e.g. a `HessianOperator`.
        k: number of eigenpairs, ``1 <= k <= P``.
        generator: CPU generator for the start vector.
        which: ``"largest"`` (algebraically largest) or ``"smallest"`` (most negative).
        max_iter: most Lanczos steps; ``max(100, 10 k)`` when None (capped at ``P``).
        tol: residual tolerance relative to the spectral norm.

    Returns:
        ``(values, vectors)``: ``(k,)`` float64 eigenvalues, descending for ``"largest"`` and
        ascending (most negative first) for ``"smallest"``; ``(k, P)`` unit eigenvectors as rows
        (sign arbitrary), in the operator's dtype.

    Raises:
        ConfigError: for ``k``, ``which``, ``max_iter`` or ``tol`` out of range.
    """
    _check(k, max_iter, tol, operator.size)
    require(which in ("largest", "smallest"), "which", which, "one of ['largest', 'smallest']")
    found = _solve(operator, k, which, max_iter, tol, generator)
    pairs = found.largest if which == "largest" else found.smallest
    return pairs.values, pairs.vectors


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
        _check(k, max_iter, tol, None)
        require(which in _WHICH, "which", which, f"one of {list(_WHICH)}")
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
        found = _solve(
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


def _solve(
    operator: SymmetricOperator,
    k: int,
    which: Which,
    max_iter: int | None,
    tol: float,
    generator: torch.Generator,
    warn: bool = True,
) -> ExtremeEigenpairs:
    start = torch.randn(operator.size, generator=generator, dtype=operator.dtype)
    found = extreme_eigenpairs(
        operator.matvec,
        start.to(operator.device),
        num_largest=k if which != "smallest" else 0,
        num_smallest=k if which != "largest" else 0,
        max_steps=max_iter if max_iter is not None else default_max_iter(k),
        tol=tol,
        generator=generator,
    )
    if warn and not found.converged:
        log.warning(
            "Hessian eigenpairs did not reach tol=%g in %d Lanczos steps; raise max_iter",
            tol,
            found.num_matvecs,
        )
    return found


def _check(k: int, max_iter: int | None, tol: float, size: int | None) -> None:
    int_k = isinstance(k, int) and not isinstance(k, bool)
    require(int_k and k >= 1, "k", k, "an int >= 1")
    if size is not None:
        require(k <= size, "k", k, f"at most the {size} parameters")
    require(
        max_iter is None
        or (isinstance(max_iter, int) and not isinstance(max_iter, bool) and max_iter >= k),
        "max_iter",
        max_iter,
        f"an int >= k ({k}) or null",
    )
    require(
        isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol > 0,
        "tol",
        tol,
        "a float > 0",
    )
