import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lsuite.errors import ConfigError
from lsuite.functional.params import flatten
from lsuite.probes.data_source import DataSource
from lsuite.probes.hessian_operator import HessianOperator
from lsuite.probes.point import snapshot

ENGINES = ["reuse", "recompute", "forward_over_reverse"]


def rel(a, b):
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


@pytest.mark.parametrize("engine", ENGINES)
def test_products_match_dense_hessian(case, engine):
    op = HessianOperator(case.point(), case.data()["train"], engine=engine)
    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(4, op.size, generator=g, dtype=torch.float64)
    assert op.size == case.hessian.shape[0]
    assert op.dtype == torch.float64
    assert rel(op.matvec(vectors[0]), case.hessian @ vectors[0]) < 1e-10
    assert rel(op.matmat(vectors), vectors @ case.hessian) < 1e-10
    assert op.num_matvecs == 5
    assert rel(op.gradient(), case.gradient) < 1e-12
    assert op.loss() == pytest.approx(case.loss, rel=1e-12)


@pytest.mark.parametrize("batched", [True, False])
def test_batched_and_looped_products_agree(case, batched):
    op = HessianOperator(case.point(), case.data()["train"], batched=batched)
    vectors = torch.randn(
        3, op.size, dtype=torch.float64, generator=torch.Generator().manual_seed(5)
    )
    assert rel(op.matmat(vectors), vectors @ case.hessian) < 1e-10


def test_reuse_keeps_one_graph_for_every_product(mlp):
    op = HessianOperator(mlp.point(), mlp.data()["train"])
    v = torch.ones(op.size, dtype=torch.float64)
    first = op.matvec(v)
    graph = op._graph
    assert torch.equal(op.matvec(v), first)
    assert op._graph is graph


def test_selected_parameters_give_the_diagonal_block(mlp):
    point = mlp.point()
    names = ["2.weight", "4.bias"]
    op = HessianOperator(point, mlp.data()["train"], param_names=names[::-1])
    assert op.names == names  # key order of the point, whatever order was asked
    offsets, start = {}, 0
    for k, v in point.params.items():
        offsets[k] = torch.arange(start, start + v.numel())
        start += v.numel()
    index = torch.cat([offsets[k] for k in names])
    block = mlp.hessian[index][:, index]
    v = torch.randn(op.size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert op.block_sizes == [point.params[k].numel() for k in names]
    assert rel(op.matvec(v), block @ v) < 1e-10
    assert rel(op.gradient(), mlp.gradient[index]) < 1e-12
    assert set(op.to_params(v)) == set(names)


def test_result_does_not_depend_on_how_data_is_split(mlp):
    x = torch.cat([b[0] for b in mlp.batches])
    y = torch.cat([b[1] for b in mlp.batches])
    one = HessianOperator(mlp.point(), DataSource([(x, y)]))
    many = HessianOperator(
        mlp.point(), DataSource([(x[i : i + 1], y[i : i + 1]) for i in range(len(y))])
    )
    v = torch.randn(one.size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert rel(one.matvec(v), many.matvec(v)) < 1e-12
    assert rel(one.matvec(v), mlp.hessian @ v) < 1e-10


def test_scaling_the_loss_scales_the_hessian(mlp):
    def scaled(outputs, targets):
        return 3.0 * F.cross_entropy(outputs, targets)

    op = HessianOperator(snapshot(mlp.model, scaled), mlp.data()["train"])
    v = torch.randn(op.size, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert rel(op.matvec(v), 3.0 * (mlp.hessian @ v)) < 1e-10


DDP_SCRIPT = """
import json, multiprocessing, sys
import torch
import torch.distributed as dist
import torch.nn.functional as F
from lsuite.probes.data_source import DataSource
from lsuite.probes.hessian_eigenvalues import HessianEigenvalues
from lsuite.probes.hessian_operator import HessianOperator
from lsuite.probes.hessian_spectrum import HessianSpectrum
from lsuite.probes.hessian_trace import HessianTrace
from lsuite.probes.point import snapshot


def reduce_sum(t):
    dist.all_reduce(t)
    return t


def worker(rank, world):
    dist.init_process_group("gloo", init_method=f"file://{sys.argv[2]}.rdzv", rank=rank,
                            world_size=world)
    model, batches, v = torch.load(sys.argv[1], weights_only=False)
    point = snapshot(model, F.cross_entropy)
    source = DataSource(batches[rank::world], reduce_sum=reduce_sum, world_size=world, rank=rank)
    out = {"hv": HessianOperator(point, source).matvec(v).tolist()}
    for key, (cls, kwargs) in PROBE_SPECS.items():
        probe = globals()[cls](**kwargs)
        generator = torch.Generator().manual_seed(0)
        out[key] = probe.run(point, {"train": source}, generator=generator).to_dict()
    with open(f"{sys.argv[2]}.{rank}", "w") as f:
        json.dump(out, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    context = multiprocessing.get_context("fork")
    ranks = [context.Process(target=worker, args=(r, 2)) for r in range(2)]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join()
    sys.exit(max(p.exitcode for p in ranks))
"""

PROBE_SPECS = {
    "trace": ("HessianTrace", {"num_matvecs": 30, "rel_stderr": None}),
    "eigs": ("HessianEigenvalues", {"k": 2, "which": "both"}),
    "spectrum": ("HessianSpectrum", {"num_runs": 2, "lanczos_steps": 10}),
}


@pytest.mark.ddp
def test_two_gloo_ranks_equal_one_process(mlp, tmp_path):
    import json
    import subprocess
    import sys

    from lsuite.probes.hessian_eigenvalues import HessianEigenvalues
    from lsuite.probes.hessian_spectrum import HessianSpectrum
    from lsuite.probes.hessian_trace import HessianTrace

    batches = [*mlp.batches, (mlp.batches[0][0][:2], mlp.batches[0][1][:2])]  # 4 batches
    v = torch.randn(mlp.hessian.shape[0], dtype=torch.float64)
    torch.save((mlp.model, batches, v), tmp_path / "inputs.pt")
    script = DDP_SCRIPT.replace(
        "\n\ndef reduce_sum", f"\nPROBE_SPECS = {PROBE_SPECS!r}\n\n\ndef reduce_sum", 1
    )
    (tmp_path / "worker.py").write_text(script)
    cmd = [
        sys.executable,
        str(tmp_path / "worker.py"),
        str(tmp_path / "inputs.pt"),
        str(tmp_path / "out"),
    ]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    ranks = [json.loads((tmp_path / f"out.{r}").read_text()) for r in (0, 1)]

    point = snapshot(mlp.model, F.cross_entropy)
    source = DataSource(batches)
    single = {"hv": HessianOperator(point, source).matvec(v).tolist()}
    classes = {c.__name__: c for c in (HessianTrace, HessianEigenvalues, HessianSpectrum)}
    for key, (cls, kwargs) in PROBE_SPECS.items():
        result = classes[cls](**kwargs).run(
            point, {"train": source}, generator=torch.Generator().manual_seed(0)
        )
        single[key] = result.to_dict()
    assert ranks[0] == ranks[1]  # every rank holds the same result
    assert ranks[0]["hv"] == pytest.approx(single["hv"], rel=1e-10, abs=1e-12)
    assert ranks[0]["trace"]["trace"] == pytest.approx(single["trace"]["trace"], rel=1e-9)
    assert ranks[0]["trace"]["num_matvecs"] == single["trace"]["num_matvecs"]
    assert ranks[0]["eigs"]["eigenvalues"] == pytest.approx(single["eigs"]["eigenvalues"], rel=1e-9)
    assert ranks[0]["eigs"]["smallest"] == pytest.approx(single["eigs"]["smallest"], rel=1e-9)
    assert ranks[0]["spectrum"]["trace"] == pytest.approx(single["spectrum"]["trace"], rel=1e-9)


def test_rank_without_batches_contributes_zero(mlp):
    # The other rank holds 17 samples (the first reduction is the sample count) and sends
    # zeros afterwards; this rank holds no batch but joins every reduction.
    calls = []

    def reduce_sum(t):
        if t.shape == (2,) and not t.any():  # the [failed, done] status before each sum: all well
            return t
        calls.append(t)
        return t + 17 if len(calls) == 1 else t

    source = DataSource([], reduce_sum=reduce_sum, world_size=2, rank=1)
    op = HessianOperator(mlp.point(), source)
    v = torch.ones(op.size, dtype=torch.float64)
    assert torch.equal(op.matvec(v), torch.zeros_like(v))
    assert torch.equal(op.matmat(v[None]), torch.zeros_like(v[None]))
    assert torch.equal(op.gradient(), torch.zeros_like(v))
    assert op.loss() == 0.0
    assert len(calls) == 5


def finite_difference_hvp(point, batches, v, eps=1e-5):
    from lsuite.functional.params import unflatten

    n = sum(int(b[1].shape[0]) for b in batches)

    def grad(flat):
        params = {k: t.requires_grad_(True) for k, t in unflatten(flat, point.params).items()}
        buffers = {k: t.clone() for k, t in point.buffers.items()}
        loss = sum(
            b[1].shape[0] / n * point.loss_fn(point.outputs(b[0], params, buffers), b[1])
            for b in batches
        )
        return flatten(
            dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
        )

    w = flatten(point.params)
    return (grad(w + eps * v) - grad(w - eps * v)) / (2 * eps)


@pytest.mark.parametrize("engine", ["reuse", "recompute"])
def test_train_mode_batchnorm_matches_finite_differences(cnn, engine):
    # torch.func.hessian is off by ~1% for train-mode BatchNorm (torch 2.13), so the ground
    # truth here is a central difference of exact gradients on the smooth (tanh) network.
    point = cnn.point(bn_mode="train")
    buffers = {k: v.clone() for k, v in point.buffers.items()}
    op = HessianOperator(point, cnn.data()["train"], engine=engine)
    v = torch.randn(op.size, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    hv = op.matvec(v)
    assert rel(hv, finite_difference_hvp(point, cnn.batches, v)) < 1e-7
    assert rel(op.matmat(torch.stack([v, 2 * v]))[1], 2 * hv) < 1e-12
    for k, b in point.buffers.items():  # running statistics update a copy
        assert torch.equal(b, buffers[k])


class WithUnused(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 2))
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        return self.used(x)


def test_unused_parameter_has_zero_curvature():
    model = WithUnused().double()
    batches = [(torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 0]))]
    op = HessianOperator(snapshot(model, F.cross_entropy), DataSource(batches))
    v = torch.ones(op.size, dtype=torch.float64)
    hv = op.to_params(op.matvec(v))
    assert torch.equal(hv["unused.weight"], torch.zeros(2, 2, dtype=torch.float64))
    assert hv["used.0.weight"].abs().sum() > 0


def test_linear_gradient_gives_zero_hessian():
    model = nn.Linear(3, 1, bias=False).double()
    batches = [(torch.randn(4, 3, dtype=torch.float64), torch.zeros(4))]

    def linear_loss(outputs, targets):
        return (outputs.squeeze(-1) - targets).mean()

    op = HessianOperator(snapshot(model, linear_loss), DataSource(batches))
    block = torch.ones(2, 3, dtype=torch.float64)
    assert torch.equal(op.matmat(block), torch.zeros_like(block))
    assert torch.equal(
        op.matvec(torch.ones(3, dtype=torch.float64)), torch.zeros(3, dtype=torch.float64)
    )


def test_works_under_no_grad_and_inference_mode(mlp):
    v = torch.ones(mlp.hessian.shape[0], dtype=torch.float64)
    with torch.no_grad():
        a = HessianOperator(mlp.point(), mlp.data()["train"]).matvec(v)
    with torch.inference_mode():
        point = mlp.point()
    b = HessianOperator(point, mlp.data()["train"]).matvec(v)
    assert rel(a, mlp.hessian @ v) < 1e-10
    assert rel(b, mlp.hessian @ v) < 1e-10


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"param_names": ["nope"]}, r"param_names: got \['nope'\]; expected names of trainable"),
        ({"param_names": []}, r"param_names: got \[\]; expected at least one"),
        ({"param_names": ["0.bias", "0.bias"]}, r"param_names: .*without repeats"),
        ({"engine": "magic"}, r"engine: got 'magic'; expected one of"),
        ({"batched": "yes"}, r"^batched: got 'yes'; expected true, false or null$"),
    ],
)
def test_invalid_arguments_name_the_argument(mlp, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        HessianOperator(mlp.point(), mlp.data()["train"], **kwargs)


def test_functional_engine_refuses_train_mode_batchnorm(cnn):
    with pytest.raises(ConfigError, match=r"engine: got 'forward_over_reverse'.*bn_mode='train'"):
        HessianOperator(cnn.point("train"), cnn.data()["train"], engine="forward_over_reverse")
