"""Sharpness: the loss increase in a ball around the weights (worst case, adaptive, average)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from lsuite.errors import require
from lsuite.evaluate import (
    BATCHINGS,
    AffinePoints,
    Batching,
    evaluate_points,
)
from lsuite.functional.params import flatten
from lsuite.probes.base import Probe, ProbeData, ProbeResult
from lsuite.probes.data_source import DataSource
from lsuite.probes.directions import loss_and_gradient
from lsuite.probes.point import ModelPoint

Kind = Literal["worst_case", "adaptive", "average"]
KINDS = ("worst_case", "adaptive", "average")

_DRAW_BYTES = 64 * 2**20  # most memory for the perturbations drawn at once


@dataclasses.dataclass(frozen=True)
class SharpnessResult(ProbeResult):
    """Loss increases around the weights ``w`` on the primary split.

    Attributes:
        loss: ``L(w)``, the mean probe loss.
        gradient_norm: ``||grad L(w)||``.
        rho: ball radii, in the order of the lists below.
        worst_case: per ``rho``, ``max_k L(w + e_k) - L(w)`` over the iterates ``e_k`` of
            projected gradient ascent in ``||e|| <= rho`` (a lower bound on the maximum); None
            when not requested.
        adaptive: per ``rho``, the same in the ball ``||e / |w| || <= rho`` (elementwise
            ``|w|``; ASAM, Kwon, Kim, Park, Choi 2021); None when not requested.
        sigma: noise scales, in the order of ``average``.
        average: per ``sigma``, ``E_e[L(w + e)] - L(w)`` for ``e ~ N(0, sigma^2 I)``, from
            ``num_samples`` antithetic pairs ``w +- e`` (Jiang, Neyshabur, Mobahi, Krishnan,
            Bengio 2019, "Fantastic Generalization Measures and Where to Find Them"); None when
            not requested.
        average_stderr: per ``sigma``, the standard error of ``average``.
        steps: ascent steps per radius (1 is SAM's one-step estimate).
        num_samples: noise draws per ``sigma``.
        num_gradients: gradients of the full probe loss computed.
    """

    loss: float
    gradient_norm: float
    rho: list[float]
    worst_case: list[float] | None
    adaptive: list[float] | None
    sigma: list[float]
    average: list[float] | None
    average_stderr: list[float] | None
    steps: int
    num_samples: int
    num_gradients: int

    def scalars(self) -> dict[str, float]:
        """Return ``loss``, ``gradient_norm``, ``worst_case_rho_<r>``, ``average_sigma_<s>``, ..."""
        out = {"loss": self.loss, "gradient_norm": self.gradient_norm}
        for kind in ("worst_case", "adaptive"):
            values = getattr(self, kind)
            if values is not None:
                out.update({f"{kind}_rho_{r:g}": v for r, v in zip(self.rho, values, strict=True)})
        if self.average is not None and self.average_stderr is not None:
            for s, v, e in zip(self.sigma, self.average, self.average_stderr, strict=True):
                out[f"average_sigma_{s:g}"] = v
                out[f"average_sigma_{s:g}_stderr"] = e
        return out


class Sharpness(Probe):
    """Measure how much the loss rises in a small neighbourhood of the weights.

    ``worst_case`` maximises ``L(w + e) - L(w)`` over ``||e|| <= rho`` by projected normalised
    gradient ascent: ``e_1 = rho g / ||g||`` (SAM's estimate, Foret, Kleiner, Mobahi, Neyshabur
    2021), then ``e_{k+1} = rho * unit(unit(e_k) + unit(grad L(w + e_k)))`` (an ascent step of
    length ``rho`` followed by projection onto the sphere, which converges to the constrained
    maximum on quadratics). The reported value is the best iterate. ``adaptive`` runs the same in
    the coordinates ``e = |w| * u``, ``||u|| <= rho``. ``average`` is a Monte Carlo estimate with
    antithetic pairs, whose odd (linear) terms cancel exactly. Everything is measured on the
    primary split (the first in ``data``).

    Args:
        kinds: which measures to compute, some of ``worst_case``, ``adaptive``, ``average``.
        rho: ball radii for ``worst_case`` and ``adaptive`` (Euclidean, in weight units).
        steps: ascent steps per radius, ``>= 1`` (1 = SAM's one-step estimate).
        sigma: Gaussian noise scales for ``average``.
        num_samples: noise draws per ``sigma``, ``>= 2`` (each evaluated at ``w + e`` and
            ``w - e``).
        batching: how ``average``'s points are evaluated (see `lsuite.evaluate`).
        name: probe name (default ``"sharpness"``).

    Raises:
        ConfigError: for an argument out of range.
    """

    def __init__(
        self,
        kinds: Sequence[Kind] = KINDS,
        rho: Sequence[float] = (0.01, 0.05, 0.1),
        steps: int = 5,
        sigma: Sequence[float] = (0.001, 0.01),
        num_samples: int = 16,
        batching: Batching = "auto",
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        require(
            len(kinds) >= 1 and all(k in KINDS for k in kinds) and len(set(kinds)) == len(kinds),
            "kinds",
            kinds,
            f"a non-empty list of distinct names from {list(KINDS)}",
        )
        self.kinds = kinds
        self.rho = _positive_list(rho, "rho")
        self.sigma = _positive_list(sigma, "sigma")
        require(
            isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1,
            "steps",
            steps,
            "an int >= 1",
        )
        self.steps = steps
        require(
            isinstance(num_samples, int) and not isinstance(num_samples, bool) and num_samples >= 2,
            "num_samples",
            num_samples,
            "an int >= 2",
        )
        self.num_samples = num_samples
        require(batching in BATCHINGS, "batching", batching, f"one of {list(BATCHINGS)}")
        self.batching: Batching = batching

    def run(
        self, point: ModelPoint, data: ProbeData, *, generator: torch.Generator
    ) -> SharpnessResult:
        """Measure the sharpness of ``point`` on the primary split.

        Args:
            point: the frozen model.
            data: probe batches by split; the first entry is used.
            generator: CPU generator for the noise draws (and for a start direction when the
                gradient is exactly zero).

        Returns:
            The requested sharpness values.
        """
        source = next(iter(data.values()))
        flat = flatten(point.params).detach()
        loss, gradient = loss_and_gradient(point, source, flat)
        counter = [1]
        ascent: dict[str, list[float] | None] = {"worst_case": None, "adaptive": None}
        for kind in ("worst_case", "adaptive"):
            if kind in self.kinds:
                scale = torch.ones_like(flat) if kind == "worst_case" else flat.abs()
                start = (loss, gradient)
                ascent[kind] = [
                    self._ascend(point, source, flat, scale, rho, start, generator, counter) - loss
                    for rho in self.rho
                ]
        average = stderr = None
        if "average" in self.kinds:
            pairs = [self._average(point, source, flat, s, loss, generator) for s in self.sigma]
            average = [m for m, _ in pairs]
            stderr = [e for _, e in pairs]
        return SharpnessResult(
            loss=loss,
            gradient_norm=float(torch.linalg.vector_norm(gradient.double())),
            rho=list(self.rho),
            worst_case=ascent["worst_case"],
            adaptive=ascent["adaptive"],
            sigma=list(self.sigma),
            average=average,
            average_stderr=stderr,
            steps=self.steps,
            num_samples=self.num_samples,
            num_gradients=counter[0],
        )

    def _ascend(
        self,
        point: ModelPoint,
        source: DataSource,
        flat: Tensor,
        scale: Tensor,
        rho: float,
        start: tuple[float, Tensor],
        generator: torch.Generator,
        counter: list[int],
    ) -> float:
        """Return the largest loss over the ascent iterates in ``||e / scale|| <= rho``."""
        loss, gradient = start
        step = _unit(scale * gradient)
        if step is None:  # exactly zero gradient: start along a random direction
            step = _unit(scale * _gaussian(flat, generator).to(flat.device))
            if step is None:
                return loss
        u = rho * step
        best = -math.inf
        for _ in range(self.steps - 1):
            value, grad = loss_and_gradient(point, source, flat + scale * u)
            counter[0] += 1
            best = max(best, value)
            ascent = _unit(scale * grad)
            if ascent is None:
                break
            direction = _unit(u / rho + ascent)
            if direction is None:
                break
            u = rho * direction
        return max(best, _loss_at(point, source, flat + scale * u))

    def _average(
        self,
        point: ModelPoint,
        source: DataSource,
        flat: Tensor,
        sigma: float,
        loss: float,
        generator: torch.Generator,
    ) -> tuple[float, float]:
        """Return the mean and standard error of ``(L(w+e) + L(w-e)) / 2 - L(w)``."""
        group = max(1, min(self.num_samples, _DRAW_BYTES // (flat.numel() * flat.element_size())))
        samples: list[Tensor] = []
        for first in range(0, self.num_samples, group):
            count = min(group, self.num_samples - first)
            draws = torch.stack(
                [
                    torch.randn(flat.shape, generator=generator, dtype=flat.dtype)
                    for _ in range(count)
                ]
            ).to(flat.device)
            eye = torch.eye(count, dtype=torch.float64)
            points = AffinePoints(flat, sigma * draws, torch.cat([eye, -eye]))
            values, _ = evaluate_points(point, {"train": source}, points, batching=self.batching)
            pair = values["train"].loss.reshape(2, count)
            samples.append(pair.mean(0) - loss)
        sample = torch.cat(samples)
        return float(sample.mean()), float(sample.std() / math.sqrt(sample.numel()))

    def __repr__(self) -> str:
        return (
            f"Sharpness(kinds={self.kinds}, rho={self.rho}, steps={self.steps}, "
            f"sigma={self.sigma}, num_samples={self.num_samples}, name={self.name!r})"
        )


def _loss_at(point: ModelPoint, source: DataSource, flat: Tensor) -> float:
    points = AffinePoints(flat, flat.new_zeros(1, flat.numel()), torch.zeros(1, 1))
    values, _ = evaluate_points(point, {"train": source}, points, batching="loop")
    return float(values["train"].loss[0])


def _gaussian(flat: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(flat.shape, generator=generator, dtype=flat.dtype)


def _unit(vector: Tensor) -> Tensor | None:
    length = torch.linalg.vector_norm(vector)
    if not bool(length > 0) or not bool(torch.isfinite(length)):
        return None
    return vector / length


def _positive_list(values: Sequence[float] | float, key: str) -> list[float]:
    items = [values] if isinstance(values, (int, float)) else list(values)
    require(
        len(items) >= 1
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in items),
        key,
        values,
        "a non-empty list of numbers > 0",
    )
    return [float(v) for v in items]
