"""The typed result of `GeneralizationMeasures`: Jiang et al.'s measures at one point."""

from __future__ import annotations

import dataclasses

from lsuite.probes.base import ProbeResult


@dataclasses.dataclass(frozen=True)
class GeneralizationMeasuresResult(ProbeResult):
    """Jiang et al.'s measures at the weights ``w`` (``w^0``: the ``init`` point).

    ``d`` is the number of layers, ``W_i`` their weight matrices (convolution kernels reshaped
    to ``(C_out, C_in k_h k_w)``), ``gamma`` the margin, ``m`` the number of probe samples.
    Products over layers are reported as logarithms (they overflow otherwise); rank
    correlations are unchanged by it. Nothing is divided by ``m``.

    Attributes:
        loss: mean probe loss at ``w``.
        error: top-1 error at ``w`` (None when undefined for the outputs).
        num_samples: ``m``, probe samples over all ranks.
        num_params: ``omega``, the number of trainable parameters (params, 20).
        num_layers: ``d``.
        layers: the layers' parameter names.
        layer_frobenius: ``||W_i||_F`` per layer.
        layer_spectral: ``||W_i||_2`` per layer (``torch.linalg.matrix_norm(ord=2)``).
        layer_distance_frobenius: ``||W_i - W_i^0||_F`` per layer.
        layer_distance_spectral: ``||W_i - W_i^0||_2`` per layer.
        margin: ``gamma``, the 10th percentile over the probe samples of the output margin
            ``f(x)[y] - max_{j != y} f(x)[j]`` (negative when over 10% are misclassified).
        inverse_margin: ``1 / gamma^2`` (inverse margin, 22).
        l2: ``||w||_2`` over all trainable parameters.
        l2_dist: ``||w - w^0||_2`` over all trainable parameters.
        log_prod_of_fro: ``log prod_i ||W_i||_F^2`` (prod-of-fro, 37).
        log_prod_of_fro_over_margin: ``log (prod_i ||W_i||_F^2 / gamma^2)`` (36).
        log_sum_of_fro: ``log (d (prod_i ||W_i||_F^2)^(1/d))`` (sum-of-fro, 39).
        log_sum_of_fro_over_margin: ``log (d (prod_i ||W_i||_F^2 / gamma^2)^(1/d))`` (38).
        log_prod_of_spec: ``log prod_i ||W_i||_2^2`` (prod-of-spec, 32).
        log_prod_of_spec_over_margin: ``log (prod_i ||W_i||_2^2 / gamma^2)`` (31).
        log_sum_of_spec: ``log (d (prod_i ||W_i||_2^2)^(1/d))`` (sum-of-spec, 35).
        log_sum_of_spec_over_margin: ``log (d (prod_i ||W_i||_2^2 / gamma^2)^(1/d))`` (34).
        fro_over_spec: ``sum_i ||W_i||_F^2 / ||W_i||_2^2`` (33).
        log_spec_orig_main: ``log (prod_i ||W_i||_2^2 / gamma^2 * sum_i ||W_i||_F^2 /
            ||W_i||_2^2)`` (spec-orig, 30).
        log_spec_init_main: ``log (prod_i ||W_i||_2^2 / gamma^2 * sum_i ||W_i - W_i^0||_F^2 /
            ||W_i||_2^2)`` (spec-init, 29).
        param_norm: ``sum_i ||W_i||_F^2`` (param-norm, 42).
        fro_dist: ``sum_i ||W_i - W_i^0||_F^2`` (distance from init, Frobenius, 40).
        dist_spec_init: ``sum_i ||W_i - W_i^0||_2^2`` (distance from init, spectral, 41).
        path_norm: ``sum_j f_{w^2}(1)[j]``, the outputs summed at squared weights (biases too)
            for an all-ones input (path-norm, 44; the path norm of ReLU networks without
            normalisation layers); None when the inputs are not one tensor.
        path_norm_over_margin: ``path_norm / gamma^2`` (43).
        target: the allowed rise of ``criterion`` for the scales below.
        criterion: ``"loss"`` (probe loss) or ``"error"`` (top-1 error) for the scales below.
        pacbayes_sigma: the largest ``sigma`` with ``E_u[C(w + u)] - C(w) <= target`` for
            ``u ~ N(0, sigma^2 I)`` (Monte Carlo, antithetic pairs).
        pacbayes_flatness: ``1 / sigma^2`` (pacbayes.flatness, 53).
        pacbayes_init: ``||w - w^0||^2 / (4 sigma^2) + log(m / sigma) + 10`` (pacbayes.init,
            48).
        pacbayes_orig: ``||w||^2 / (4 sigma^2) + log(m / sigma) + 10`` (pacbayes.orig, 49).
        pacbayes_mag_sigma: the same ``sigma'`` for ``u_i ~ N(0, sigma'^2 w_i^2 + eps^2)``.
        pacbayes_mag_flatness: ``1 / sigma'^2`` (pacbayes.mag.flatness, 61).
        sharpness_alpha: the largest ``alpha'`` with ``max_{|u_i| <= alpha'} C(w + u) - C(w) <=
            target`` (the maximum by projected sign-gradient ascent, a lower bound).
        sharpness_flatness: ``1 / alpha'^2`` (sharpness.flatness).
        sharpness_mag_alpha: the same for the box ``|u_i| <= alpha' |w_i| + eps``.
        sharpness_mag_flatness: ``1 / alpha'^2`` of the magnitude-aware box
            (sharpness.mag.flatness).
        magnitude_eps: ``eps`` of the magnitude-aware noise and box.
        searches_bracketed: whether every scale search found a scale above the target (False:
            a scale is the search's upper limit, the loss never rose enough).
        hessian_trace: ``tr(H)`` of the mean probe loss (`HessianTrace`, Hutch++); None when
            not requested.
        hessian_trace_stderr: its standard error.
        hessian_top_eigenvalue: the largest Hessian eigenvalue (`HessianEigenvalues`, Lanczos);
            None when not requested.
        num_gradients: gradients of the full probe loss computed by the sharpness searches.
        init: what ``w^0`` is (``"init"``, ``"epoch:N"``, a path, or ``"anchor"`` when given as
            a keyword).
    """

    loss: float
    error: float | None
    num_samples: int
    num_params: int
    num_layers: int
    layers: list[str]
    layer_frobenius: list[float]
    layer_spectral: list[float]
    layer_distance_frobenius: list[float]
    layer_distance_spectral: list[float]
    margin: float
    inverse_margin: float
    l2: float
    l2_dist: float
    log_prod_of_fro: float
    log_prod_of_fro_over_margin: float
    log_sum_of_fro: float
    log_sum_of_fro_over_margin: float
    log_prod_of_spec: float
    log_prod_of_spec_over_margin: float
    log_sum_of_spec: float
    log_sum_of_spec_over_margin: float
    fro_over_spec: float
    log_spec_orig_main: float
    log_spec_init_main: float
    param_norm: float
    fro_dist: float
    dist_spec_init: float
    path_norm: float | None
    path_norm_over_margin: float | None
    target: float
    criterion: str
    pacbayes_sigma: float
    pacbayes_flatness: float
    pacbayes_init: float
    pacbayes_orig: float
    pacbayes_mag_sigma: float
    pacbayes_mag_flatness: float
    sharpness_alpha: float
    sharpness_flatness: float
    sharpness_mag_alpha: float
    sharpness_mag_flatness: float
    magnitude_eps: float
    searches_bracketed: bool
    hessian_trace: float | None
    hessian_trace_stderr: float | None
    hessian_top_eigenvalue: float | None
    num_gradients: int
    init: str
