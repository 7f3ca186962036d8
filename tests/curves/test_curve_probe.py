"""The Curve probe: a straight curve is the line (equals Interpolation), simplex grids, skips."""

import pytest
import torch
import torch.nn.functional as F
from curve_cases import endpoint_files, sgd, tiny_net

from lsuite.model.curve import CurveModule
from lsuite.model.simplex import SimplexModule
from lsuite.plots.render import render
from lsuite.probes.curve import Curve, barrier_over
from lsuite.probes.interpolation import Interpolation, barrier
from lsuite.results.records import ProbeRecord


@pytest.mark.parametrize(("kind", "bends"), [("bezier", 1), ("bezier", 2), ("polychain", 2)])
def test_curve_on_the_line_is_the_line(tmp_path, probe_batches, kind, bends):
    (a, b), (_, net_b) = endpoint_files(tmp_path)
    module = CurveModule(tiny_net(), sgd(), 10, start=a, end=b, kind=kind, bends=bends)
    half = len(probe_batches[0][0]) // 2
    train = [(probe_batches[0][0][:half], probe_batches[0][1][:half])]
    val = [(probe_batches[0][0][half:], probe_batches[0][1][half:])]
    result = Curve(num_points=5).measure(module.probe_network(), train, val_batches=val)
    line = Interpolation(num_points=5, start=a).measure(net_b, train, val_batches=val)
    assert result.kind == kind and result.skipped is None and result.t == line.alpha
    for split in ("train", "val"):
        torch.testing.assert_close(result.loss[split], line.loss[split], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(result.line_loss[split], line.loss[split], rtol=1e-5, atol=1e-6)
        assert result.accuracy[split] == line.accuracy[split]
        assert result.line_loss_barrier[split] == pytest.approx(line.loss_barrier[split], abs=1e-5)
        assert result.loss_max[split] == pytest.approx(max(line.loss[split]), rel=1e-5)
    assert result.bn_statistics == "none"


def test_a_plain_network_is_skipped_with_a_reason(probe_batches):
    result = Curve().measure(tiny_net(), probe_batches)
    assert result.kind == "none" and "no curve or simplex" in result.skipped
    assert result.scalars() == {"skipped": 1.0}


def test_simplex_grid_face_and_barriers(tmp_path, probe_batches):
    paths, _ = endpoint_files(tmp_path)
    module = SimplexModule(tiny_net(), sgd(), 10, vertices=paths, free_vertices=1, init_scale=0.5)
    result = Curve(simplex_resolution=2).measure(module.probe_network(), probe_batches)
    rows = torch.tensor(result.coordinates, dtype=torch.float64)
    assert result.kind == "simplex" and rows.shape == (6, 3) and result.fixed == [0, 1]
    # the face of the two fixed vertices: the three rows with no weight on the free vertex
    assert result.face_rows == [i for i, r in enumerate(rows.tolist()) if r[2] == 0]
    x, y = probe_batches[0]
    by_hand = [float(F.cross_entropy(module.forward_at(c, x).detach(), y)) for c in rows]
    torch.testing.assert_close(result.loss["train"], by_hand, rtol=1e-5, atol=1e-6)
    assert result.line_loss["train"] == [result.loss["train"][i] for i in result.face_rows]
    values = torch.tensor(by_hand, dtype=torch.float64)
    vertex = {
        i: values[next(j for j, r in enumerate(rows.tolist()) if r[i] == 1)] for i in range(3)
    }
    chord = rows @ torch.stack([vertex[0], vertex[1], vertex[2]])
    expected = max(0.0, float((values - chord).max()))
    assert result.loss_barrier["train"] == pytest.approx(expected, abs=1e-6)
    assert barrier_over(values, rows) == pytest.approx(expected)
    # on the face, the barrier is the line's (Interpolation's definition)
    face = [result.loss["train"][i] for i in result.face_rows]
    alphas = [rows[i, 1].item() for i in result.face_rows]
    order = sorted(range(len(alphas)), key=alphas.__getitem__)
    line_barrier, _ = barrier([alphas[i] for i in order], [face[i] for i in order])
    assert result.line_loss_barrier["train"] == pytest.approx(line_barrier, abs=1e-6)


def test_batch_norm_statistics_are_recomputed_and_said(tmp_path, probe_batches):
    (a, b), _ = endpoint_files(tmp_path, batch_norm=True)
    module = CurveModule(tiny_net(batch_norm=True), sgd(), 10, start=a, end=b)
    result = Curve(num_points=3, bn_recompute_batches=1).measure(
        module.probe_network(), probe_batches
    )
    assert result.bn_statistics == "recomputed"
    off = Curve(num_points=3, bn_recompute_batches=0).measure(module.probe_network(), probe_batches)
    assert off.bn_statistics == "point"


def test_plot_of_a_curve_record(tmp_path, probe_batches):
    (a, b), _ = endpoint_files(tmp_path)
    module = CurveModule(tiny_net(), sgd(), 10, start=a, end=b)
    result = Curve(num_points=5).measure(
        module.probe_network(), probe_batches, val_batches=probe_batches
    )
    record = ProbeRecord(meta={"probe": "curve", "step": 3}, result=result)
    files = render(record, tmp_path)
    assert [f.name for f in files] == ["curve_step0000003_curve.png"] and files[0].stat().st_size
    skipped = Curve().measure(tiny_net(), probe_batches)
    assert render(ProbeRecord(meta={"probe": "curve"}, result=skipped), tmp_path) == []
