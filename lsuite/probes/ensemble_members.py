"""Collect an ensemble's members: expand specs, resolve their groups, and drop duplicates."""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lsuite.anchors.history import Observation
from lsuite.anchors.specs import parse_spec
from lsuite.errors import require
from lsuite.functional.curves import combine_flat, dirichlet_coordinates, find_family
from lsuite.functional.params import Params, flatten, unflatten
from lsuite.probes.point import ModelPoint, as_params

RUN_GROUP = "run"
"""Group of the measured run's own points (``current``, ``epoch:N``, ``trajectory``, ...)."""


@dataclasses.dataclass(frozen=True)
class Members:
    """The members of an ensemble, in order.

    Attributes:
        labels: ``(M,)`` names (see `lsuite.probes.ensemble.EnsembleResult.labels`).
        groups: ``(M,)`` trajectories.
        params: each member's trainable parameters (keys of the measured point's).
        buffers: each member's own buffers (empty when it brings none).
    """

    labels: list[str]
    groups: list[str]
    params: list[Params]
    buffers: list[Params]


def collect_members(
    point: ModelPoint,
    points: Sequence[Any] | None,
    specs: Sequence[str],
    groups: Sequence[str],
    *,
    include_current: bool,
    family_points: int,
    generator: torch.Generator,
) -> Members:
    """Return the members in order, each once (the first of equal weights is kept).

    Args:
        point: the measured point (the member ``current`` with ``include_current``).
        points: the resolved ``points`` (parameters, or observations for ``trajectory``); when
            their count differs from ``specs`` (weights given in Python) they are ``pointI``.
        specs: the ``points`` specs.
        groups: the group of each spec.
        include_current: add the measured point.
        family_points: points of the measured network's curve or simplex to add.
        generator: draws simplex points.

    Returns:
        The members.
    """
    items = list(points or [])
    named = len(items) == len(specs)
    found: list[tuple[str, str, Any]] = []
    for i, item in enumerate(items):
        spec = specs[i] if named else None
        group = groups[i] if named else "points"
        if isinstance(item, Observation) or (
            isinstance(item, (list, tuple)) and all(isinstance(o, Observation) for o in item)
        ):
            seen = [item] if isinstance(item, Observation) else list(item)
            found += [
                (f"epoch:{o.epoch}", group, {**o.buffers, **o.params}) for o in seen if o.step > 0
            ]
        else:
            label = spec if spec is not None and spec != "trajectory" else f"point{i}"
            found.append((label, group, item))
    found += _family_members(point, family_points, generator)
    if include_current:
        found.append(("current", RUN_GROUP, {**point.buffers, **point.params}))
    labels: list[str] = []
    kept_groups: list[str] = []
    members: list[Params] = []
    own: list[Params] = []
    flats: list[Tensor] = []
    for label, group, weights in found:
        params = as_params(weights, point.params)
        flat = flatten(params)
        if any(_same(flat, other) for other in flats):
            continue
        labels.append(label)
        kept_groups.append(group)
        members.append(params)
        own.append(_own_buffers(weights, point.buffers))
        flats.append(flat)
    return Members(labels, kept_groups, members, own)


def _same(a: Tensor, b: Tensor) -> bool:
    """Return whether two flat weight vectors are equal up to float32 rounding."""
    return bool(torch.allclose(a.double(), b.double(), rtol=1e-6, atol=1e-8))


def _family_members(
    point: ModelPoint, count: int, generator: torch.Generator
) -> list[tuple[str, str, Params]]:
    """Return ``count`` points of the curve or simplex the measured network carries, if any."""
    family = find_family(point.skeleton)
    if count == 0 or family is None:
        return []
    controls = family.points().to(point.device, torch.float64)
    if family.kind == "simplex":
        coefficients = dirichlet_coordinates(controls.shape[0], count, generator, torch.float64)
        labels = [f"sample{i}" for i in range(count)]
    else:
        t = torch.linspace(0.0, 1.0, count, dtype=torch.float64) if count > 1 else torch.zeros(1)
        coefficients = family.coefficients(t.double()).to(torch.float64)
        labels = [f"t={float(v):.3g}" for v in t]
    rows = combine_flat(controls, coefficients.to(point.device)).to(point.dtype)  # (K, P)
    return [
        (label, "family", unflatten(row, point.params))
        for label, row in zip(labels, rows, strict=True)
    ]


def _own_buffers(weights: Any, like: Params) -> Params:
    """Return the buffers of ``like`` that a member's state holds (same shapes), cast like them."""
    if not isinstance(weights, Mapping):
        return {}
    keys = [
        k
        for k, ref in like.items()
        if isinstance(weights.get(k), Tensor) and weights[k].shape == ref.shape
    ]
    return as_params({k: weights[k] for k in keys}, {k: like[k] for k in keys}) if keys else {}


def expand_specs(specs: list[str], groups: list[str] | None) -> tuple[list[str], list[str]]:
    """Return the specs with glob patterns expanded and checked, and each one's group."""
    out: list[str] = []
    labels: list[str] = []
    for i, spec in enumerate(specs):
        if isinstance(spec, str) and any(c in spec for c in "*?"):
            files = sorted(glob.glob(str(Path(spec).expanduser())))
            require(bool(files), "points", spec, "a glob pattern matching checkpoint files")
        else:
            files = [spec]
        for text in files:
            parsed = parse_spec(text, "points")
            out.append(parsed.text)
            labels.append(groups[i] if groups is not None else _group_of(parsed))
    return out, labels


def _group_of(spec: Any) -> str:
    """Return the trajectory a spec belongs to: its run directory, or the measured run."""
    if spec.kind == "run" and spec.path is not None:
        return spec.path.resolve().name
    if spec.kind == "file" and spec.path is not None:
        parent = spec.path.resolve().parent
        return parent.parent.name if parent.name == "checkpoints" else parent.name
    return RUN_GROUP
