"""Ensemble probe: metrics against hand computations on set predictions, embeddings, specs."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lsuite.errors import ConfigError
from lsuite.probes.base import ProbeResult
from lsuite.probes.data_source import DataSource
from lsuite.probes.ensemble import Ensemble, EnsembleResult
from lsuite.probes.ensemble_stats import pca_embedding, squared_distances
from lsuite.probes.point import snapshot


class Table(nn.Module):
    """A fake network whose outputs are set: ``forward(i) = logits[i]`` for sample indices."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float64))

    def forward(self, index):
        return self.logits[index]


N, C, M = 7, 3, 3
TARGETS = torch.tensor([0, 1, 2, 0, 1, 2, 2])


def tables(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [Table(3 * torch.randn(N, C, generator=g, dtype=torch.float64)) for _ in range(M)]


def batches(sizes=(3, 4)):
    index = torch.arange(N)
    out, start = [], 0
    for size in sizes:
        out.append((index[start : start + size], TARGETS[start : start + size]))
        start += size
    return out


def hand(members):
    """Every metric by explicit loops over samples, in numpy."""
    p = [F.softmax(m.logits.detach(), 1).numpy() for m in members]
    y = TARGETS.numpy()
    acc = [np.mean([q[n].argmax() == y[n] for n in range(N)]) for q in p]
    nll = [np.mean([-math.log(q[n, y[n]]) for n in range(N)]) for q in p]
    mean = sum(p) / len(p)
    ens_acc = np.mean([mean[n].argmax() == y[n] for n in range(N)])
    ens_nll = np.mean([-math.log(mean[n, y[n]]) for n in range(N)])
    k = len(p)
    dis = np.zeros((k, k))
    kl = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            dis[i, j] = np.mean([p[i][n].argmax() != p[j][n].argmax() for n in range(N)])
            kl[i, j] = np.mean(
                [
                    sum(p[i][n, c] * math.log(p[i][n, c] / p[j][n, c]) for c in range(C))
                    for n in range(N)
                ]
            )
    w = np.stack([m.logits.detach().numpy().ravel() for m in members])
    cos = np.array([[a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in w] for a in w])
    return dict(acc=acc, nll=nll, ens_acc=ens_acc, ens_nll=ens_nll, dis=dis, kl=kl, cos=cos, p=p)


def test_metrics_equal_hand_computation():
    members = tables()
    init = Table(torch.randn(N, C, generator=torch.Generator().manual_seed(9), dtype=torch.float64))
    probe = Ensemble(include_current=True, init="init")  # declared; given as init= below
    result = probe.measure(members[-1], batches(), points=members[:-1], init=init)
    want = hand(members)
    assert result.labels == ["point0", "point1", "current"]
    assert result.member_accuracy["train"] == pytest.approx(want["acc"], abs=1e-12)
    assert result.member_nll["train"] == pytest.approx(want["nll"], rel=1e-10)
    assert result.ensemble_accuracy["train"] == pytest.approx(want["ens_acc"], abs=1e-12)
    assert result.ensemble_nll["train"] == pytest.approx(want["ens_nll"], rel=1e-10)
    assert np.allclose(result.disagreement["train"], want["dis"], atol=1e-12)
    assert np.allclose(result.kl["train"], want["kl"], rtol=1e-9, atol=1e-12)
    assert np.allclose(result.symmetric_kl["train"], (want["kl"] + want["kl"].T) / 2, rtol=1e-9)
    assert np.allclose(result.weight_cosine, want["cos"], rtol=1e-10)
    w0 = init.logits.detach().numpy().ravel()
    d = np.stack([m.logits.detach().numpy().ravel() - w0 for m in members])
    change = d @ d.T / np.outer(np.linalg.norm(d, axis=1), np.linalg.norm(d, axis=1))
    assert np.allclose(result.change_cosine, change, rtol=1e-10)
    assert result.num_samples == {"train": N}
    scalars = result.scalars()
    off = ~np.eye(M, dtype=bool)
    assert scalars["train_disagreement"] == pytest.approx(want["dis"][off].mean())
    assert scalars["train_kl"] == pytest.approx(((want["kl"] + want["kl"].T) / 2)[off].mean())
    assert scalars["num_members"] == 3
    assert scalars["train_member_accuracy"] == pytest.approx(np.mean(want["acc"]))


def test_pca_embedding_equals_svd_of_predictions():
    members = tables(1)
    result = Ensemble().measure(members[0], batches(), points=members[1:])
    want = hand([*members[1:], members[0]])
    x = np.stack([q.ravel() for q in want["p"]]) / math.sqrt(N)  # (M, N*C)
    x = x - x.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    coords = np.asarray(result.embedding["train"])
    for axis in range(2):
        ref = u[:, axis] * s[axis]
        assert np.allclose(np.abs(coords[:, axis]), np.abs(ref), atol=1e-10)
        assert np.allclose(coords[:, axis] * np.sign(coords[:, axis] @ ref), ref, atol=1e-10)
    assert result.explained_variance["train"] == pytest.approx((s[:2] ** 2 / (s**2).sum()).tolist())


def test_gram_distances_and_pca_on_random_vectors():
    x = torch.randn(5, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    gram = x @ x.T
    assert torch.allclose(squared_distances(gram), torch.cdist(x, x) ** 2, atol=1e-10)
    coords, explained = pca_embedding(gram)
    _, _, v = torch.pca_lowrank(x, q=4, center=True, niter=8)
    projected = (x - x.mean(0)) @ v[:, :2]
    assert torch.allclose(coords.abs(), projected.abs(), atol=1e-8)
    assert explained.sum() <= 1.0 + 1e-12


def test_batch_split_does_not_change_the_result():
    members = tables(2)
    a = Ensemble().measure(members[0], batches((3, 4)), points=members[1:])
    b = Ensemble().measure(members[0], batches((1, 2, 2, 2)), points=members[1:])
    assert a.to_dict().keys() == b.to_dict().keys()
    for key in ("member_nll", "kl", "embedding", "ensemble_nll", "disagreement"):
        assert np.allclose(
            np.asarray(list(a.to_dict()[key].values())),
            np.asarray(list(b.to_dict()[key].values())),
            rtol=1e-10,
            atol=1e-12,
        )


def test_two_ranks_equal_one(monkeypatch):
    """The shards of two ranks, their sums added as an all-reduce would, give the 1-rank result."""
    import threading

    members = tables(4)
    all_batches = batches((2, 2, 2, 1))
    point = snapshot(members[0], F.cross_entropy)
    probe = Ensemble(embedding="pca")
    single = probe.run(
        point,
        {"val": DataSource(all_batches, name="val")},
        generator=torch.Generator().manual_seed(0),
        points=members[1:],
    )
    barrier = threading.Barrier(2)
    slots = [None, None]
    results = [None, None]

    def reducer(rank):
        def reduce_sum(t):
            slots[rank] = t.clone()
            barrier.wait()
            total = slots[0] + slots[1]
            barrier.wait()
            return total

        return reduce_sum

    def worker(rank):
        source = DataSource(
            all_batches[rank::2], reduce_sum=reducer(rank), name="val", world_size=2, rank=rank
        )
        results[rank] = probe.run(
            point, {"val": source}, generator=torch.Generator().manual_seed(0), points=members[1:]
        )

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results[0].to_dict() == results[1].to_dict()
    got, want = results[0].to_dict(), single.to_dict()
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, dict):
            for split, v in value.items():
                assert np.allclose(got[key][split], v, rtol=1e-12, atol=1e-14), key
        elif key in ("weight_cosine",):
            assert np.allclose(got[key], value)
        else:
            assert got[key] == value, key


def test_duplicates_count_once_and_single_member():
    members = tables()
    result = Ensemble().measure(members[0], batches(), points=[members[0], members[1]])
    assert result.labels == ["point0", "point1"]  # current equals point0: dropped
    alone = Ensemble(points=[]).measure(members[0], batches())
    assert alone.labels == ["current"]
    assert "train_disagreement" not in alone.scalars()
    assert alone.embedding["train"] == [[0.0, 0.0]]


@pytest.mark.slow
def test_tsne_embedding_is_seeded():
    pytest.importorskip("sklearn")
    members = tables(5)
    probe = Ensemble(embedding="tsne", perplexity=30.0)
    a = probe.measure(members[0], batches(), points=members[1:])
    b = probe.measure(members[0], batches(), points=members[1:])
    assert a.embedding == b.embedding
    assert a.perplexity == 2.0  # lowered to M - 1
    assert np.asarray(a.embedding["train"]).shape == (3, 2)


def test_result_round_trip_and_registered():
    members = tables()
    result = Ensemble().measure(members[0], batches(), points=members[1:], val_batches=batches())
    again = EnsembleResult.from_dict(result.to_dict())
    assert again.to_dict() == result.to_dict()
    from lsuite.probes.result_registry import result_class

    assert result_class("EnsembleResult") is EnsembleResult
    assert isinstance(result, ProbeResult)
    assert set(result.member_accuracy) == {"train", "val"}


def test_regression_outputs_are_refused():
    net = nn.Linear(3, 1)
    data = [(torch.randn(4, 3), torch.randn(4, 1))]
    with pytest.raises(ConfigError, match="expected class logits"):
        Ensemble(points=[]).measure(net, data, loss_fn=F.mse_loss)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"embedding": "umap"}, "embedding: got 'umap'"),
        ({"perplexity": 0}, "perplexity"),
        ({"points": [], "include_current": False}, "at least one spec"),
        ({"points": ["nowhere/*.ckpt"]}, "glob pattern"),
        ({"points": ["epoch:x"]}, "epoch:N"),
        ({"points": ["init", "epoch:1"], "groups": ["a"]}, "groups"),
        ({"bn_recompute_batches": -1}, "bn_recompute_batches"),
        ({"init": "missing.ckpt"}, "init: got 'missing.ckpt'"),
    ],
    ids=lambda v: str(v)[:30] if isinstance(v, dict) else None,
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Ensemble(**kwargs)


def test_specs_globs_and_groups(tmp_path):
    net = Table(torch.zeros(N, C))
    for run in ("a", "b"):
        (tmp_path / run / "checkpoints").mkdir(parents=True)
        for step in ("last", 1, 2):
            torch.save(
                net.state_dict(),
                tmp_path
                / run
                / "checkpoints"
                / (f"step{step}.ckpt" if step != "last" else "last.ckpt"),
            )
    probe = Ensemble(
        points=[str(tmp_path / "*" / "checkpoints" / "step*.ckpt"), "epoch:0"], init="init"
    )
    assert len(probe.points) == 5
    assert probe.groups == ["a", "a", "b", "b", "run"]
    assert probe.point_specs() == {"points": probe.points, "init": "init"}
    named = Ensemble(points=[str(tmp_path / "a"), "trajectory"], groups=["x", "y"])
    assert named.groups == ["x", "y"]


def test_plot_is_rendered_from_the_record(tmp_path):
    from lsuite.plots.render import render

    members = tables()
    result = Ensemble().measure(members[0], batches(), points=members[1:], val_batches=batches())
    record = {
        "schema": 2,
        "meta": {"probe": "ensemble", "kind": "EnsembleResult", "step": 3},
        "result": result.to_dict(),
    }
    written = render(record, tmp_path)
    assert [p.name for p in written] == ["ensemble_step0000003_ensemble.png"]
    assert written[0].stat().st_size > 1000


def test_batch_norm_members_use_their_own_statistics():
    def bn_net(seed):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
        with torch.no_grad():
            net.train()
            net(torch.randn(64, 4) * (seed + 1) + seed)  # distinct running statistics
        return net.eval()

    a, b = bn_net(0), bn_net(1)
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(10) % 3
    result = Ensemble(points=[]).measure(a, [(x, y)], points=[b])
    assert result.bn_statistics == "own"
    with torch.no_grad():
        want = [F.cross_entropy(net(x), y).item() for net in (b, a)]
    assert result.member_nll["train"] == pytest.approx(want, rel=1e-6)


def test_family_points_of_a_curve_are_members():
    from lsuite.functional.curves import PointFamily, attach_family
    from lsuite.functional.params import flatten

    ends = tables(6)
    controls = torch.stack([flatten(dict(m.named_parameters())).detach() for m in ends])  # (3, P)
    net = Table(ends[1].logits.detach().clone())
    family = PointFamily(
        "bezier", lambda: controls, fixed=(0, 2), centre=torch.tensor([0.25, 0.5, 0.25])
    )
    attach_family(net, family)
    probe = Ensemble(points=[], include_current=False, family_points=3)
    result = probe.measure(net, batches())
    assert result.labels == ["t=0", "t=0.5", "t=1"]
    assert result.groups == ["family"] * 3
    alone = [Ensemble(points=[]).measure(ends[i], batches()).member_nll["train"][0] for i in (0, 2)]
    nll = result.member_nll["train"]
    assert [nll[0], nll[2]] == pytest.approx(alone, rel=1e-10)
    plain = Ensemble(points=[], family_points=3).measure(ends[0], batches())
    assert plain.labels == ["current"]  # no family: none added
