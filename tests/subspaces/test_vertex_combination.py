"""combine_vertices: values and gradients equal autograd's expression and finite differences."""

import pytest
import torch

from lsuite.functional import vertex_combination
from lsuite.functional.vertex_combination import (
    VertexEntry,
    VertexLayout,
    combine_vertices,
    cosine_squared,
)

SHAPES = {"a.weight": (3, 2), "b.weight": (2, 2, 1), "a.bias": (3,), "b.bias": (2,)}
GROUPS = {"a.weight": 0, "a.bias": 0, "b.weight": 1, "b.bias": 1}


def _layout(num_groups):
    parts = []
    for names in (["a.weight", "b.weight"], ["a.bias", "b.bias"]):
        entries, start = [], 0
        for n in names:
            size = torch.Size(SHAPES[n]).numel()
            group = GROUPS[n] if num_groups > 1 else 0
            entries.append(VertexEntry(n, start, start + size, SHAPES[n], group))
            start += size
        parts.append(tuple(entries))
    return VertexLayout((parts[0], parts[1]), num_groups)


def _vertices(k, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(k, 10, generator=g, dtype=torch.float64, requires_grad=True)
    o = torch.randn(k, 5, generator=g, dtype=torch.float64, requires_grad=True)
    return w, o


def _reference(w, o, weights, layout, pair):
    """The same quantities through autograd's own operations."""
    params = {}
    for part, entries in zip((w, o), layout.parts, strict=True):
        for e in entries:
            params[e.name] = (weights[e.group] @ part[:, e.start : e.stop]).view(e.shape)
    if pair is None:
        return params, None
    u, v = w[pair[0]], w[pair[1]]
    cosine = u @ v / (u.norm() * v.norm())
    return params, (cosine**2, cosine)


CASES = [
    {"k": 2, "groups": 1, "pair": (0, 1)},
    {"k": 2, "groups": 1, "pair": (1, 0)},
    {"k": 3, "groups": 1, "pair": (2, 0)},
    {"k": 3, "groups": 2, "pair": (1, 2)},
    {"k": 4, "groups": 1, "pair": None},
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"k={c['k']}-groups={c['groups']}")
def test_values_and_gradients_equal_autograds_expression(case):
    k, layout, pair = case["k"], _layout(case["groups"]), case["pair"]
    g = torch.Generator().manual_seed(1)
    weights = torch.rand(case["groups"], k, generator=g, dtype=torch.float64)
    weights = weights / weights.sum(dim=1, keepdim=True)
    upstream = {n: torch.randn(s, generator=g, dtype=torch.float64) for n, s in SHAPES.items()}
    scalars = torch.randn(2, generator=g, dtype=torch.float64)
    results = []
    for fn in (combine_vertices, _reference):
        w, o = _vertices(k)
        params, cos = fn(w, o, weights, layout, pair)
        total = sum((params[n] * upstream[n]).sum() for n in SHAPES)
        if cos is not None:
            total = total + scalars[0] * cos[0] + scalars[1] * cos[1]
        total.backward()
        results.append((params, cos, w.grad, o.grad))
    (params, cos, w_grad, o_grad), (ref, ref_cos, ref_w, ref_o) = results
    assert list(params) == layout.names
    for n in SHAPES:
        assert torch.equal(params[n], ref[n].detach()), n
    if pair is not None:
        torch.testing.assert_close(cos[0], ref_cos[0].detach(), rtol=1e-12, atol=0)
        torch.testing.assert_close(cos[1], ref_cos[1].detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(w_grad, ref_w, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(o_grad, ref_o, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c["groups"] == 1], ids=lambda c: f"k={c['k']}"
)
def test_float_weights_equal_tensor_weights(case):
    k, layout, pair = case["k"], _layout(1), case["pair"]
    g = torch.Generator().manual_seed(2)
    weights = torch.rand(1, k, generator=g, dtype=torch.float64)
    weights = weights / weights.sum()
    upstream = {n: torch.randn(s, generator=g, dtype=torch.float64) for n, s in SHAPES.items()}
    results = []
    for given in (weights, weights[0].tolist()):
        w, o = _vertices(k)
        params, cos = combine_vertices(w, o, given, layout, pair)
        total = sum((params[n] * upstream[n]).sum() for n in SHAPES)
        if cos is not None:
            total = total + cos[0] - 2 * cos[1]
        total.backward()
        results.append((params, cos, w.grad, o.grad))
    (params, cos, w_grad, o_grad), (by_float, cos_float, w_float, o_float) = results
    for n in SHAPES:
        torch.testing.assert_close(by_float[n], params[n], rtol=1e-15, atol=1e-15)
    if pair is not None:
        assert torch.equal(cos_float[0], cos[0]) and torch.equal(cos_float[1], cos[1])
    torch.testing.assert_close(w_float, w_grad, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(o_float, o_grad, rtol=1e-15, atol=1e-15)
    with pytest.raises(ValueError, match=r"^weights: got 1 floats; expected one per vertex"):
        combine_vertices(w, o, [1.0], layout, pair)
    with pytest.raises(ValueError, match=r"a layout of one group \(2\)"):
        combine_vertices(w, o, weights[0].tolist(), _layout(2), pair)


def test_unused_outputs_have_zero_gradient():
    w, o = _vertices(3)
    weights = torch.tensor([[0.2, 0.3, 0.5]], dtype=torch.float64)
    params, _ = combine_vertices(w, o, weights, _layout(1), (0, 1))
    params["a.bias"].sum().backward()  # nothing else (not the cosine) reaches the loss
    assert not w.grad.any()
    expected = torch.zeros_like(o)
    expected[:, :3] = weights[0].unsqueeze(1)
    torch.testing.assert_close(o.grad, expected, rtol=0, atol=0)


def test_gradcheck_against_finite_differences():
    weights = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]], dtype=torch.float64)
    for groups in (1, 2):
        layout = _layout(groups)

        def fn(w, o, layout=layout, groups=groups):
            params, (square, cosine) = combine_vertices(w, o, weights[:groups], layout, (2, 1))
            return (*params.values(), square, cosine)

        assert torch.autograd.gradcheck(fn, _vertices(3, seed=2))


def test_cosine_squared_gradcheck():
    points = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: cosine_squared(p, 0, 2), (points,))
    assert torch.autograd.gradcheck(lambda p: cosine_squared(p[:2], 0, 1), (points,))


def test_device_scalar_path_equals_host_path(monkeypatch):
    """Off a CPU the cosine's scalars stay 0-dim tensors: the same values and gradients."""
    layout, weights = _layout(1), torch.tensor([[0.2, 0.3, 0.5]], dtype=torch.float64)
    results = []
    for on_host in (True, False):
        monkeypatch.setattr(vertex_combination, "scalars_on_host", lambda device, v=on_host: v)
        w, o = _vertices(3, seed=3)
        params, (square, cosine) = combine_vertices(w, o, weights, layout, (2, 0))
        single_square, single_cosine = cosine_squared(w, 1, 2)
        total = sum(p.sum() for p in params.values()) + 3 * square - cosine
        (total + single_square + 2 * single_cosine).backward()
        results.append((square, cosine, single_square, single_cosine, w.grad, o.grad))
    for host, device in zip(*results, strict=True):
        torch.testing.assert_close(device, host, rtol=1e-14, atol=1e-15)


def test_zero_vertex_has_no_angle():
    points = torch.zeros(2, 4, dtype=torch.float64)
    points[1, 0] = 1.0
    square, cosine = cosine_squared(points, 0, 1)
    assert torch.isnan(square) and torch.isnan(cosine)
