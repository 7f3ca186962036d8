"""One real, small result of every probe result class, and records made from them."""

import dataclasses
import functools
import json
import math
import tempfile
from pathlib import Path

import torch
from landscape_cases import batches_for, mlp

from lsuite.model.curve import CurveModule
from lsuite.probes.base import to_jsonable
from lsuite.probes.curve import Curve
from lsuite.probes.ensemble import Ensemble
from lsuite.probes.generalization import GeneralizationMeasures
from lsuite.probes.hessian_eigenvalues import HessianEigenvalues
from lsuite.probes.hessian_spectrum import HessianSpectrum
from lsuite.probes.hessian_trace import HessianTrace
from lsuite.probes.interpolation import Interpolation
from lsuite.probes.line import Line
from lsuite.probes.plane import Plane
from lsuite.probes.sharpness import Sharpness

META = {"step": 12, "epoch": 2, "when": "epoch", "weights": "current", "seconds": 0.5}
META |= {"world_size": 1, "source": "lsuite-train"}


@functools.cache
def results():
    """Return ``{probe name: result}``, one per result class, measured on a 163-parameter MLP."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = mlp(1)
        train, val = batches_for(model), batches_for(model, 1)

        def g():
            return torch.Generator().manual_seed(0)

        return {
            "hessian_trace": HessianTrace(num_matvecs=4, per_layer=True).measure(
                model, train, generator=g()
            ),
            "hessian_eigs": HessianEigenvalues(k=2, which="both", max_iter=60, tol=1e-3).measure(
                model, train, generator=g()
            ),
            "hessian_spectrum": HessianSpectrum(num_runs=2, lanczos_steps=6, num_points=16).measure(
                model, train, generator=g()
            ),
            "interpolation": Interpolation(
                num_points=5, align=["none", "weight"], repair=["none", "repair"]
            ).measure(model, train, val_batches=val, start=mlp(0)),
            "line": Line(num_points=5).measure(model, train, generator=g()),
            "plane": Plane(num_points=3).measure(model, train, val_batches=val, generator=g()),
            "sharpness": Sharpness(rho=[0.01], steps=1, sigma=[0.01], num_samples=2).measure(
                model, train, generator=g()
            ),
            "curve": Curve(num_points=3).measure(
                _curve_between(mlp(0), mlp(2)), train, val_batches=val
            ),
            "ensemble": Ensemble().measure(model, train, val_batches=val, points=[mlp(0), mlp(2)]),
            "generalization": GeneralizationMeasures(
                num_samples=2,
                sharpness_steps=1,
                search_depth=2,
                hessian_trace_matvecs=4,
                hessian_max_iter=8,
            ).measure(model, train, init=mlp(0), generator=g()),
        }
    finally:
        torch.set_num_threads(before)


def _curve_between(start, end):
    """Return the midpoint network of a straight Bezier curve between two MLPs."""
    with tempfile.TemporaryDirectory() as directory:
        paths = [Path(directory) / name for name in ("start.pt", "end.pt")]
        for path, net in zip(paths, (start, end), strict=True):
            torch.save(net.state_dict(), path)
        module = CurveModule(
            mlp(1),
            lambda params: torch.optim.SGD(params, lr=0.1),
            3,
            start=str(paths[0]),
            end=str(paths[1]),
        )
    return module.probe_network()


def through_json(value):
    """Return ``value`` as a JSON file would give it back."""
    return json.loads(json.dumps(value, allow_nan=False))


def flat_record(name, result, **meta):
    """Return a record as lsuite wrote it before schema 2 (meta and result fields side by side)."""
    record = {"probe": name, "kind": type(result).__name__, **META, **meta, **result.to_dict()}
    return {**record, "scalars": to_jsonable(result.scalars())}


def assert_same_result(got, want):
    """Assert two results are of one class and equal field by field (NaN equals NaN)."""
    assert type(got) is type(want)
    for field in dataclasses.fields(want):
        if field.compare:
            assert_same(getattr(got, field.name), getattr(want, field.name), field.name)


def assert_same(got, want, where):
    if isinstance(want, float) and math.isnan(want):
        assert isinstance(got, float) and math.isnan(got), where
    elif isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor) and torch.equal(got.to(want.dtype), want), where
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif dataclasses.is_dataclass(want):
        assert_same_result(got, want)
    else:
        assert type(got) is type(want) and got == want, (where, got, want)
