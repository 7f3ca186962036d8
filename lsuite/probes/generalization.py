"""Jiang et al.'s generalization measures at one point: norms, margins, flatness and curvature.

Jiang, Neyshabur, Mobahi, Krishnan, Bengio 2019, "Fantastic Generalization Measures and Where to
Find Them" (definitions in their Appendix C; equation numbers in parentheses). The "layers" are
the weights with two or more dimensions (`lsuite.functional.layer_norms.layer_matrices`); biases
and normalisation parameters are not layers but are perturbed and counted as parameters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lsuite.anchors.specs import parse_spec
from lsuite.errors import ConfigError, require
from lsuite.evaluate import BATCHINGS, Batching
from lsuite.functional.layer_norms import layer_norms
from lsuite.functional.params import Params, flatten
from lsuite.probes.base import Probe, ProbeData
from lsuite.probes.data_source import DataSource
from lsuite.probes.directions import loss_and_gradient
from lsuite.probes.generalization_result import GeneralizationMeasuresResult
from lsuite.probes.hessian_eigenvalues import HessianEigenvalues
from lsuite.probes.hessian_trace import HessianTrace
from lsuite.probes.margins import margin_percentile
from lsuite.probes.perturbation_scales import (
    CRITERIA,
    Criterion,
    criterion_values,
    pacbayes_sigma,
    sharpness_alpha,
)
from lsuite.probes.point import ModelPoint, as_params

__all__ = ["GeneralizationMeasures", "GeneralizationMeasuresResult"]


class GeneralizationMeasures(Probe):
    """Measure Jiang et al.'s norm, margin, flatness and curvature measures at the weights.

    Standalone: ``GeneralizationMeasures().measure(model, batches, init=model_at_init)`` with
    ``init`` a module or state dict (the weights ``w^0`` distances are measured from). In
    training (`ProbeCallback`) ``init`` names the weights: ``"init"`` (the run's initial
    weights, the default), ``"epoch:N"``, ``"step:N"``, a checkpoint path or a run directory
    (see `lsuite.anchors`). Everything is measured on the primary split (the first in
    ``data``), as means, sums and counts over the probe samples of all ranks, so 2 ranks give
    the 1-rank result. Random draws (the noise ``z_k``, the zero-gradient signs, the Hessian
    probes' vectors) come from the probe's generator in that order.

    The scales: ``pacbayes_sigma`` and ``pacbayes_mag_sigma`` (Gaussian noise) and
    ``sharpness_alpha`` and ``sharpness_mag_alpha`` (worst case in a box) are each the largest
    scale whose rise of the criterion (probe loss, or top-1 error) stays below ``target``,
    found by doubling or halving from ``start_scale`` and ``search_depth`` bisection steps (see
    `lsuite.probes.perturbation_scales`).

    Args:
        init: the spec of ``w^0`` (checked now: a missing file fails here).
        target: the allowed rise of the criterion, ``> 0`` (0.1 as in Jiang et al.).
        criterion: ``"loss"`` (the probe loss, default) or ``"error"`` (top-1 error, the
            paper's 0-1 loss).
        num_samples: Gaussian draws ``K >= 1`` for the PAC-Bayes expectations (each evaluated
            at ``w + u`` and ``w - u``); memory ``K x P``.
        magnitude_eps: ``eps >= 0`` of the magnitude-aware noise and box (1e-3 in the paper).
        sharpness_steps: ascent iterates per ``alpha``, ``>= 1``.
        start_scale: the first scale each search tries, ``> 0``.
        search_depth: bisection steps per search, ``>= 0`` (the final bracket's ratio is
            ``2 ** (2 ** -search_depth)``).
        hessian_trace_matvecs: Hessian-vector products of the trace estimate (Hutch++, at least
            3); 0 skips it.
        hessian_max_iter: most Lanczos steps for the top eigenvalue; 0 skips it.
        batching: how perturbed points are evaluated (see `lsuite.evaluate`).
        name: probe name (default ``"generalization"``, the config file's name).

    Raises:
        ConfigError: for an argument out of range.
    """

    def __init__(
        self,
        init: str = "init",
        target: float = 0.1,
        criterion: Criterion = "loss",
        num_samples: int = 8,
        magnitude_eps: float = 1e-3,
        sharpness_steps: int = 3,
        start_scale: float = 0.01,
        search_depth: int = 6,
        hessian_trace_matvecs: int = 24,
        hessian_max_iter: int = 30,
        batching: Batching = "auto",
        name: str | None = None,
    ) -> None:
        super().__init__(name or "generalization")
        self.init = parse_spec(init, "init").text
        require(_number(target) and target > 0, "target", target, "a number > 0")
        require(criterion in CRITERIA, "criterion", criterion, f"one of {list(CRITERIA)}")
        require(_integer(num_samples, 1), "num_samples", num_samples, "an int >= 1")
        require(
            _number(magnitude_eps) and magnitude_eps >= 0,
            "magnitude_eps",
            magnitude_eps,
            "a number >= 0",
        )
        require(_integer(sharpness_steps, 1), "sharpness_steps", sharpness_steps, "an int >= 1")
        require(
            _number(start_scale) and start_scale > 0, "start_scale", start_scale, "a number > 0"
        )
        require(_integer(search_depth, 0), "search_depth", search_depth, "an int >= 0")
        require(
            _integer(hessian_trace_matvecs, 0) and hessian_trace_matvecs not in (1, 2),
            "hessian_trace_matvecs",
            hessian_trace_matvecs,
            "0 (skip) or an int >= 3",
        )
        require(_integer(hessian_max_iter, 0), "hessian_max_iter", hessian_max_iter, "an int >= 0")
        require(batching in BATCHINGS, "batching", batching, f"one of {list(BATCHINGS)}")
        self.target = float(target)
        self.criterion: Criterion = criterion
        self.num_samples = num_samples
        self.magnitude_eps = float(magnitude_eps)
        self.sharpness_steps = sharpness_steps
        self.start_scale = float(start_scale)
        self.search_depth = search_depth
        self.hessian_trace_matvecs = hessian_trace_matvecs
        self.hessian_max_iter = hessian_max_iter
        self.batching: Batching = batching

    def point_specs(self) -> dict[str, str | list[str]]:
        """Return ``{"init": init}``: the weights distances are measured from."""
        return {"init": self.init}

    def run(
        self,
        point: ModelPoint,
        data: ProbeData,
        *,
        generator: torch.Generator,
        init: Params | None = None,
    ) -> GeneralizationMeasuresResult:
        """Measure every quantity at ``point`` on the primary split.

        Args:
            point: the frozen model.
            data: probe batches by split; the first is used.
            generator: CPU generator of every random draw.
            init: the weights ``w^0`` (same keys as ``point.params``), resolved from the
                ``init`` spec.

        Returns:
            The measures.

        Raises:
            ConfigError: without ``init``, or when the outputs are not class logits.
        """
        if init is None:
            raise ConfigError(
                f"init: not given; {self.name} needs the weights of its init spec "
                f"{self.init!r} passed as init= (see point_specs)"
            )
        init = as_params(init, point.params)
        source = next(iter(data.values()))
        flat = flatten(point.params).detach()
        init_flat = flatten(init).detach().to(flat.device, flat.dtype)
        norms = layer_norms(point.params, init)
        if not norms.names:
            raise ConfigError(
                f"{self.name}: got parameters {sorted(point.params)} without a weight matrix; "
                "expected at least one parameter with two or more dimensions (a layer)"
            )
        gamma = margin_percentile(point, source)
        path = _path_norm(point, source)

        loss = float(
            criterion_values(point, source, flat, flat.new_zeros(1, flat.numel()), "loss")[0]
        )
        error = _error(point, source, flat)
        if self.criterion == "error" and error is None:
            raise ConfigError(
                "criterion: got 'error'; top-1 accuracy is undefined for these outputs and "
                "targets; use criterion 'loss'"
            )
        base_value = error if self.criterion == "error" and error is not None else loss
        draws = torch.randn(
            (self.num_samples, flat.numel()), generator=generator, dtype=flat.dtype
        ).to(flat.device)
        signs = torch.randint(0, 2, (flat.numel(),), generator=generator).to(flat) * 2 - 1
        common = {
            "target": self.target,
            "criterion": self.criterion,
            "base_value": base_value,
            "start": self.start_scale,
            "depth": self.search_depth,
            "batching": self.batching,
        }
        sigma = pacbayes_sigma(point, source, flat, draws, magnitude_eps=None, **common)
        sigma_mag = pacbayes_sigma(
            point, source, flat, draws, magnitude_eps=self.magnitude_eps, **common
        )
        _, gradient = loss_and_gradient(point, source, flat)
        counter = [1]
        ascent = {"gradient": gradient, "signs": signs, "steps": self.sharpness_steps}
        alpha = sharpness_alpha(
            point, source, flat, magnitude_eps=None, counter=counter, **ascent, **common
        )
        alpha_mag = sharpness_alpha(
            point,
            source,
            flat,
            magnitude_eps=self.magnitude_eps,
            counter=counter,
            **ascent,
            **common,
        )
        trace = stderr = top = None
        if self.hessian_trace_matvecs > 0:
            found = HessianTrace(num_matvecs=self.hessian_trace_matvecs, rel_stderr=None).run(
                point, data, generator=generator
            )
            trace, stderr = found.trace, found.stderr
        if self.hessian_max_iter > 0:
            eigen = HessianEigenvalues(k=1, max_iter=self.hessian_max_iter).run(
                point, data, generator=generator
            )
            top = eigen.eigenvalues[0]

        m = source.num_samples
        w_sq = float(torch.sum(flat.double() ** 2))
        dist_sq = float(torch.sum((flat.double() - init_flat.double()) ** 2))
        fro_sq = [v**2 for v in norms.frobenius]
        spec_sq = [v**2 for v in norms.spectral]
        d = len(norms.names)
        log_margin_sq = _log(gamma**2)
        log_prod_fro = sum(_log(v) for v in fro_sq)
        log_prod_spec = sum(_log(v) for v in spec_sq)
        fro_over_spec = sum(f / s for f, s in zip(fro_sq, spec_sq, strict=True))
        dist_over_spec = sum(
            v**2 / s for v, s in zip(norms.distance_frobenius, spec_sq, strict=True)
        )
        return GeneralizationMeasuresResult(
            loss=loss,
            error=error,
            num_samples=m,
            num_params=flat.numel(),
            num_layers=d,
            layers=norms.names,
            layer_frobenius=norms.frobenius,
            layer_spectral=norms.spectral,
            layer_distance_frobenius=norms.distance_frobenius,
            layer_distance_spectral=norms.distance_spectral,
            margin=gamma,
            inverse_margin=_ratio(1.0, gamma**2),
            l2=math.sqrt(w_sq),
            l2_dist=math.sqrt(dist_sq),
            log_prod_of_fro=log_prod_fro,
            log_prod_of_fro_over_margin=log_prod_fro - log_margin_sq,
            log_sum_of_fro=math.log(d) + log_prod_fro / d,
            log_sum_of_fro_over_margin=math.log(d) + (log_prod_fro - log_margin_sq) / d,
            log_prod_of_spec=log_prod_spec,
            log_prod_of_spec_over_margin=log_prod_spec - log_margin_sq,
            log_sum_of_spec=math.log(d) + log_prod_spec / d,
            log_sum_of_spec_over_margin=math.log(d) + (log_prod_spec - log_margin_sq) / d,
            fro_over_spec=fro_over_spec,
            log_spec_orig_main=log_prod_spec - log_margin_sq + _log(fro_over_spec),
            log_spec_init_main=log_prod_spec - log_margin_sq + _log(dist_over_spec),
            param_norm=sum(fro_sq),
            fro_dist=sum(v**2 for v in norms.distance_frobenius),
            dist_spec_init=sum(v**2 for v in norms.distance_spectral),
            path_norm=path,
            path_norm_over_margin=None if path is None else _ratio(path, gamma**2),
            target=self.target,
            criterion=self.criterion,
            pacbayes_sigma=sigma.value,
            pacbayes_flatness=_ratio(1.0, sigma.value**2),
            pacbayes_init=_pacbayes_bound(dist_sq, sigma.value, m),
            pacbayes_orig=_pacbayes_bound(w_sq, sigma.value, m),
            pacbayes_mag_sigma=sigma_mag.value,
            pacbayes_mag_flatness=_ratio(1.0, sigma_mag.value**2),
            sharpness_alpha=alpha.value,
            sharpness_flatness=_ratio(1.0, alpha.value**2),
            sharpness_mag_alpha=alpha_mag.value,
            sharpness_mag_flatness=_ratio(1.0, alpha_mag.value**2),
            magnitude_eps=self.magnitude_eps,
            searches_bracketed=all(s.bracketed for s in (sigma, sigma_mag, alpha, alpha_mag)),
            hessian_trace=trace,
            hessian_trace_stderr=stderr,
            hessian_top_eigenvalue=top,
            num_gradients=counter[0],
            init=self.init,
        )

    def __repr__(self) -> str:
        return (
            f"GeneralizationMeasures(init={self.init!r}, target={self.target}, "
            f"criterion={self.criterion!r}, num_samples={self.num_samples}, name={self.name!r})"
        )


def _path_norm(point: ModelPoint, source: DataSource) -> float | None:
    """Return ``sum_j f_{w^2}(1)[j]``: the outputs at squared weights for an all-ones input."""
    inputs = source.batches[0][0] if source.batches else None
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
        return None
    ones = torch.ones((1, *inputs.shape[1:]), dtype=point.dtype, device=point.device)
    squared = {k: v.detach() ** 2 for k, v in point.params.items()}
    with torch.no_grad():
        return float(point.outputs(ones, squared).double().sum())


def _error(point: ModelPoint, source: DataSource, flat: Tensor) -> float | None:
    try:
        values = criterion_values(point, source, flat, flat.new_zeros(1, flat.numel()), "error")
    except ConfigError:
        return None
    return float(values[0])


def _pacbayes_bound(norm_sq: float, sigma: float, m: int) -> float:
    if sigma <= 0:
        return math.inf
    return norm_sq / (4 * sigma**2) + math.log(m / sigma) + 10


def _log(value: float) -> float:
    return math.log(value) if value > 0 else -math.inf


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else math.inf


def _integer(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
