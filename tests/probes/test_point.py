"""The probes' forward: attention (SDPA math kernel), forward_fn, dtype and autocast."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lsuite.errors import ConfigError
from lsuite.functional.params import flatten
from lsuite.probes.data_source import DataSource
from lsuite.probes.hessian_eigenvalues import HessianEigenvalues
from lsuite.probes.hessian_operator import HessianOperator
from lsuite.probes.hessian_spectrum import HessianSpectrum
from lsuite.probes.hessian_trace import HessianTrace
from lsuite.probes.interpolation import Interpolation
from lsuite.probes.line import Line
from lsuite.probes.plane import Plane
from lsuite.probes.point import resolve_forward_fn, snapshot
from lsuite.probes.sharpness import Sharpness


class TinyTransformer(nn.Module):
    """Self-attention through ``scaled_dot_product_attention``, mean-pooled into 3 classes."""

    def __init__(self, seed=0, dtype=torch.float64):
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = nn.TransformerEncoderLayer(
            d_model=4,
            nhead=2,
            dim_feedforward=8,
            dropout=0.0,
            batch_first=True,
            activation=torch.tanh,  # not relu/gelu: no fused fast path, and curvature everywhere
        )
        self.head = nn.Linear(4, 3)
        self.to(dtype)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


def token_batches(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, 5, 4, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g))
        for n in (3, 2)
    ]


def test_plain_double_backward_through_sdpa_fails_on_cpu():
    """The defect the math kernel avoids (if torch fixes it, this test can go)."""
    model = TinyTransformer(dtype=torch.float32)
    x, y = token_batches(torch.float32)[0]
    params = dict(model.named_parameters())
    model.eval()
    loss = F.cross_entropy(torch.func.functional_call(model, params, (x,)), y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    with pytest.raises(RuntimeError, match=r"derivative for .*scaled_dot_product"):
        torch.autograd.grad(sum((g * g).sum() for g in grads), list(params.values()))


def test_hvp_through_attention_equals_the_exact_hessian(mean_loss):
    model, batches = TinyTransformer(), token_batches()
    point = snapshot(model, F.cross_entropy)
    flat = flatten(point.params)
    # Reverse-over-reverse autograd, as exact as float64 allows. torch.func.hessian (and
    # jacrev(jacrev)) through nn.TransformerEncoderLayer is not even symmetric in torch 2.13 on
    # the CPU (|H - H^T| ~ 0.07 here), so it cannot be the reference for attention.
    with point.context():
        exact = torch.autograd.functional.hessian(mean_loss(point, batches), flat)
    torch.testing.assert_close(exact, exact.T, rtol=0, atol=1e-12)
    operator = HessianOperator(point, DataSource(batches))
    assert operator.size == exact.shape[0] > 100
    g = torch.Generator().manual_seed(1)
    for v in torch.randn(3, operator.size, generator=g, dtype=torch.float64):
        torch.testing.assert_close(operator.matvec(v), exact @ v, rtol=1e-9, atol=1e-10)
    top = HessianEigenvalues(k=1, tol=1e-8).measure(model, batches)
    assert top.eigenvalues[0] == pytest.approx(float(torch.linalg.eigvalsh(exact)[-1]), rel=1e-5)


@pytest.mark.parametrize(
    "probe",
    [
        HessianTrace(num_matvecs=8, rel_stderr=None),
        HessianEigenvalues(k=1, max_iter=10),
        HessianSpectrum(num_runs=1, lanczos_steps=5, num_points=16),
        Sharpness(rho=(0.01,), steps=2, sigma=(0.01,), num_samples=2),
        Interpolation(num_points=3),
        Line(directions=("random", "gradient", "hessian"), num_points=3),
        Plane(num_points=3),
        Plane(directions="hessian", num_points=3),
    ],
    ids=lambda p: repr(p).split("(")[0] + ("-hessian" if "hessian'" in repr(p) else ""),
)
def test_every_probe_measures_an_attention_model(probe):
    model, batches = TinyTransformer(), token_batches()
    points = {"start": TinyTransformer(seed=1)} if "start" in probe.point_specs() else {}
    result = probe.measure(model, batches, **points)
    assert all(
        v == v for v in result.scalars().values()
    )  # finite or inf, never nan: the forward ran


def test_lightning_demo_transformer_outputs_per_token():
    """Lightning's demo: ``(B*T, V)`` log-probabilities for ``(B, T)`` targets."""
    from lightning.pytorch.demos.transformer import LightningTransformer, Transformer

    module = LightningTransformer(vocab_size=11)
    module.model = Transformer(vocab_size=11, ninp=8, nhead=2, nhid=8, nlayers=1, dropout=0.0)
    g = torch.Generator().manual_seed(0)
    tokens = [torch.randint(0, 11, (2, 6), generator=g) for _ in range(2)]
    batches = [((x, x.roll(-1, 1)), x.roll(-1, 1)) for x in tokens]  # model(inputs, target)

    def nll(outputs, targets):
        return F.nll_loss(outputs, targets.reshape(-1))

    point = snapshot(module, nll)
    assert point.outputs(batches[0][0]).shape == (12, 11)
    operator = HessianOperator(point, DataSource(batches))
    hv = operator.matvec(torch.ones(operator.size))
    assert hv.shape == (operator.size,) and bool(torch.isfinite(hv).all())
    other = {k: v + 0.1 for k, v in module.state_dict().items()}
    result = Interpolation(num_points=3).measure(module, batches, loss_fn=nll, start=other)
    assert result.accuracy is not None  # flattened (B, T) targets against (B*T, V) outputs
    assert all(0.0 <= a <= 1.0 for a in result.accuracy["train"])


class NoForward(nn.Module):
    """Like Lightning's transformer example: no ``forward``; the network is ``self.model``."""

    def __init__(self, net):
        super().__init__()
        self.model = net
        self.extra = nn.Linear(2, 2).double()  # unused by the loss, still part of weight space

    def forward(self, *args):
        raise NotImplementedError("no forward")


def small_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def mlp_batches():
    g = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(n, 4, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (n,), generator=g),
        )
        for n in (4, 3)
    ]


def test_forward_fn_submodule_equals_probing_the_submodule():
    net, batches = small_mlp(), mlp_batches()
    wrapper = NoForward(net)
    with pytest.raises(NotImplementedError):
        HessianEigenvalues(k=1).measure(wrapper, batches)
    point = snapshot(wrapper, F.cross_entropy, forward_fn="model")
    assert set(point.params) == {k for k, _ in wrapper.named_parameters()}  # whole-module keys
    direct = HessianEigenvalues(k=2, tol=1e-8).measure(net, batches)
    # the extra layer does not touch the loss: its Hessian block is zero, the top pair is the same
    wrapped = HessianEigenvalues(k=2, tol=1e-8).measure(wrapper, batches, forward_fn="model")
    assert wrapped.eigenvalues == pytest.approx(direct.eigenvalues, rel=1e-6)
    other = small_mlp(1)
    line = Interpolation(num_points=5).measure(net, batches, start=other)
    start = {f"model.{k}": v for k, v in other.state_dict().items()}
    start.update({f"extra.{k}": v for k, v in wrapper.extra.state_dict().items()})
    wrapped_line = Interpolation(num_points=5).measure(
        wrapper, batches, forward_fn="model", start=start
    )
    assert wrapped_line.loss["train"] == pytest.approx(line.loss["train"], abs=1e-12)
    assert wrapped_line.accuracy == line.accuracy


def call_model(module, inputs):
    return module.model(inputs)


def test_forward_fn_callable_dotted_path_and_errors():
    net, batches = small_mlp(), mlp_batches()
    wrapper = NoForward(net)
    probe = HessianEigenvalues(k=1, tol=1e-10)
    expected = probe.measure(net, batches).eigenvalues
    for forward_fn in (call_model, f"{__name__}.call_model", "model"):
        result = probe.measure(wrapper, batches, forward_fn=forward_fn)
        assert result.eigenvalues == pytest.approx(expected, rel=1e-8)
    with pytest.raises(
        ConfigError, match=r"forward_fn: got 'modle'.*children: \['model', 'extra'\]"
    ):
        snapshot(wrapper, F.cross_entropy, forward_fn="modle")
    with pytest.raises(ConfigError, match="forward_fn: got 3"):
        resolve_forward_fn(3)
    assert resolve_forward_fn(None) is None and resolve_forward_fn(call_model) is call_model


def float_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))


def test_dtype_float32_under_bf16_autocast_equals_the_plain_measurement():
    model, batches = float_mlp(), [(x.float(), y) for x, y in mlp_batches()]
    probe = HessianTrace(num_matvecs=8, rel_stderr=None)
    plain = probe.measure(model, batches, generator=torch.Generator().manual_seed(0)).trace
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(batches[0][0]).dtype == torch.bfloat16  # autocast is on
        cast = probe.measure(
            model, batches, dtype=torch.float32, generator=torch.Generator().manual_seed(0)
        ).trace
        line = Interpolation(num_points=3).measure(
            model, batches, start=float_mlp(), dtype="float32"
        )
    assert cast == plain
    assert line.loss["train"][0] == pytest.approx(line.loss["train"][-1])


def test_dtype_float64_casts_params_buffers_and_inputs():
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))
    point = snapshot(model, F.cross_entropy, dtype="float64")
    assert all(v.dtype == torch.float64 for v in point.params.values())
    assert point.buffers["1.running_mean"].dtype == torch.float64
    assert point.buffers["1.num_batches_tracked"].dtype == torch.int64
    x = torch.randn(3, 4)
    assert point.outputs(x).dtype == torch.float64
    assert model[0].weight.dtype == torch.float32  # the module is untouched
    reference = snapshot(model.double(), F.cross_entropy)
    torch.testing.assert_close(point.outputs(x), reference.outputs(x.double()))
    with pytest.raises(ConfigError, match="probe_dtype: got 'float16'"):
        snapshot(model, F.cross_entropy, dtype="float16")


def fraction_close(outputs, targets):
    return ((outputs[:, 0] - targets).abs() < 0.5).double().mean()


def test_accuracy_fn_for_outputs_without_top1_accuracy():
    net = nn.Sequential(nn.Linear(4, 1)).double()
    g = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(5, 4, generator=g, dtype=torch.float64),
            torch.randn(5, generator=g, dtype=torch.float64),
        )
    ]

    def mse(outputs, targets):
        return F.mse_loss(outputs[:, 0], targets)

    start = {k: v + 0.3 for k, v in net.state_dict().items()}
    plain = Interpolation(num_points=3).measure(net, batches, loss_fn=mse, start=start)
    assert plain.accuracy is None and plain.error_barrier is None
    for accuracy_fn in (fraction_close, f"{__name__}.fraction_close"):
        probe = Interpolation(num_points=3, accuracy_fn=accuracy_fn)
        result = probe.measure(net, batches, loss_fn=mse, start=start)
        expected = float(fraction_close(net(batches[0][0]), batches[0][1]))
        assert result.accuracy["train"][-1] == pytest.approx(expected)
    for probe in (
        Line(num_points=3, accuracy_fn=fraction_close),
        Plane(num_points=3, accuracy_fn=fraction_close),
    ):
        assert probe.measure(net, batches, loss_fn=mse).accuracy is not None
    with pytest.raises(ConfigError, match=r"accuracy_fn: got 'no\.such\.fn'"):
        Interpolation(accuracy_fn="no.such.fn")


def test_probes_report_progress_in_matvecs_and_grid_points():
    from lsuite.probes.progress import listening

    events = []
    net, batches = small_mlp(), mlp_batches()
    with listening(lambda event, value, unit: events.append((event, value, unit))):
        HessianTrace(num_matvecs=9, rel_stderr=None).measure(net, batches)
    assert events[0] == ("total", 9, "matvecs")
    assert sum(v for e, v, _ in events if e == "advance") == 9
    events.clear()
    with listening(lambda event, value, unit: events.append((event, value, unit))):
        Plane(num_points=3, batching="loop").measure(net, batches)
    assert events[0] == ("total", 9, "grid points")
    assert sum(v for e, v, _ in events if e == "advance") == 9
