"""A curve's and a simplex's training step equal the same step through functional_call."""

import pytest
import torch
import torch.nn.functional as F
from curve_cases import endpoint_files, sgd, tiny_net
from torch.func import functional_call

from lsuite.functional.curves import curve_coefficients, curve_weights
from lsuite.functional.flat_combination import add_rows, combine_rows
from lsuite.functional.params import flatten, unflatten
from lsuite.model.curve import CurveModule
from lsuite.model.simplex import SimplexModule

EXACT = {"rtol": 1e-15, "atol": 1e-15}


def modules(tmp_path):
    paths, _ = endpoint_files(tmp_path, count=3)
    yield "bezier", CurveModule(tiny_net().double(), sgd(), 10, start=paths[0], end=paths[1])
    yield (
        "polychain",
        CurveModule(
            tiny_net().double(), sgd(), 10, start=paths[0], end=paths[1], kind="polychain", bends=3
        ),
    )
    yield (
        "simplex",
        SimplexModule(
            tiny_net().double(), sgd(), 10, vertices=paths[:2], free_vertices=2, volume_weight=0.0
        ),
    )


def reference_loss(module, coefficients, inputs, targets):
    """The loss as before: the autograd expression and functional_call."""
    c = coefficients.to(module.free_points.dtype)
    flat = c[module._fixed_index] @ module.fixed_points + c[module._free_index] @ module.free_points
    like = {k: p.detach() for k, p in module.net.named_parameters()}
    logits = functional_call(module.net, unflatten(flat, like), (inputs,))
    return F.cross_entropy(logits, targets)


def test_step_loss_and_gradients_equal_functional_call(tmp_path, digits):
    digits.setup("fit")
    inputs, targets = next(iter(digits.train_dataloader()))
    inputs = inputs.double()
    for name, module in modules(tmp_path):
        module.log = lambda *args, **kwargs: None  # no Trainer
        before = {k: p.detach().clone() for k, p in module.net.named_parameters()}
        state = module.generator.get_state()
        loss = module.training_step((inputs, targets), 0)
        module.generator.set_state(state)
        coefficients = module.sample_coefficients()
        expected = reference_loss(module, coefficients, inputs, targets)
        (grad,) = torch.autograd.grad(loss, module.free_points)
        (expected_grad,) = torch.autograd.grad(expected, module.free_points)
        torch.testing.assert_close(loss, expected, **EXACT, msg=name)
        torch.testing.assert_close(grad, expected_grad, **EXACT, msg=name)
        assert grad.abs().sum() > 0
        # the binding gives the network its own (centre) parameters back
        for k, p in module.net.named_parameters():
            assert isinstance(p, torch.nn.Parameter) and torch.equal(p, before[k])


def test_params_at_is_the_split_combination(tmp_path):
    for name, module in modules(tmp_path):
        coefficients = torch.arange(1, len(module.order) + 1, dtype=torch.float64)
        coefficients = coefficients / coefficients.sum()
        params = module.params_at(coefficients)
        flat = module.combination(coefficients)
        torch.testing.assert_close(flatten(params), flat, **EXACT, msg=name)
        assert list(params) == [k for k, _ in module.net.named_parameters()]
        with pytest.raises(ValueError, match=r"^coefficients: got 1; expected one per point"):
            module.params_at([1.0])


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
@pytest.mark.parametrize("num_points", [2, 3, 5])
def test_curve_weights_equal_curve_coefficients(kind, num_points):
    t = torch.tensor([0.0, 0.137, 0.5, 0.81, 1.0], dtype=torch.float64)
    rows = curve_coefficients(kind, t, num_points)
    for position, row in zip(t.tolist(), rows, strict=True):
        weights = torch.tensor(curve_weights(kind, position, num_points), dtype=torch.float64)
        torch.testing.assert_close(weights, row, **EXACT)
    assert curve_weights(kind, 0.0, num_points)[0] == 1.0
    assert curve_weights(kind, 1.0, num_points)[-1] == 1.0


def test_combine_rows_gradients_with_missing_ones():
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(2, 9, generator=generator, dtype=torch.float64, requires_grad=True)
    offset = torch.randn(9, generator=generator, dtype=torch.float64)
    shapes = [torch.Size([2, 3]), torch.Size([3])]
    params = combine_rows(rows, [0.3, 0.7], offset, ["w", "b"], shapes)
    expected = unflatten(
        offset + torch.tensor([0.3, 0.7], dtype=torch.float64) @ rows,
        {"w": torch.empty(2, 3), "b": torch.empty(3)},
    )
    for key in ("w", "b"):
        torch.testing.assert_close(params[key], expected[key], **EXACT)
    # only "w" is used: "b"'s gradient is zero
    (grad,) = torch.autograd.grad(params["w"].sin().sum(), rows)
    (expected_grad,) = torch.autograd.grad(expected["w"].sin().sum(), rows)
    torch.testing.assert_close(grad, expected_grad, **EXACT)
    assert torch.all(grad[:, 6:] == 0)
    torch.testing.assert_close(add_rows(rows.detach(), [2.0, -1.0]), 2 * rows[0] - rows[1])
    with pytest.raises(ValueError, match=r"^weights: got 1; expected one per row \(2\)"):
        combine_rows(rows, [1.0], None, ["w", "b"], shapes)
