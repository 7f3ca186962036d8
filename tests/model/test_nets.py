"""Tests for the plain networks in lsuite.model (MLP, CNN, ResNet) and their YAMLs."""

import copy
import inspect
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.func import functional_call

from lsuite.errors import ConfigError
from lsuite.model.cnn import CNN
from lsuite.model.mlp import MLP
from lsuite.model.resnet import ResNet

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"

# (net class, input_shape, kwargs): every supported input kind and every norm.
CASES = [
    (MLP, (1, 8, 8), {}),
    (MLP, (1, 40), {"activation": "tanh", "dropout": 0.1}),
    (MLP, (1, 40), {"activation": "gelu", "depth": 1}),
    (CNN, (1, 40), {}),
    (CNN, (1, 40), {"norm": "batch", "pool": "avg", "hidden": 16}),
    (CNN, (1, 8, 8), {}),
    (CNN, (1, 8, 8), {"norm": "group"}),
    (CNN, (3, 32, 32), {"norm": "batch"}),
    (CNN, (2, 3), {"kernel_size": 5}),  # too short to pool at all
    (ResNet, (1, 8, 8), {"norm": "batch"}),
    (ResNet, (1, 8, 8), {"norm": "group"}),
    (ResNet, (1, 8, 8), {"norm": "none"}),
    (ResNet, (1, 8, 8), {"norm": "none", "shortcut": "pad"}),
    (ResNet, (3, 32, 32), {"norm": "batch", "depth": 8}),
    (ResNet, (3, 32, 32), {"norm": "group", "depth": 8, "width": 0.5}),
    (ResNet, (3, 32, 32), {"norm": "none", "depth": 8, "shortcut": "pad"}),
    (ResNet, (3, 9, 11), {"depth": 8}),  # odd sizes
    (ResNet, (1, 40), {"norm": "batch"}),  # 1-D layers (MNIST-1D)
    (ResNet, (2, 13), {"norm": "group", "depth": 8}),
    (ResNet, (1, 40), {"norm": "none", "depth": 8, "shortcut": "pad"}),
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny nets gain nothing from threads; on shared cores extra threads only contend.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _id(case):
    cls, shape, kwargs = case
    return f"{cls.__name__}-{shape}-" + ",".join(f"{k}={v}" for k, v in kwargs.items())


@pytest.fixture(params=CASES, ids=[_id(c) for c in CASES])
def case(request):
    return request.param


def _count(net):
    return sum(p.numel() for p in net.parameters())


def test_output_shape(case):
    cls, shape, kwargs = case
    torch.manual_seed(0)
    net = cls(shape, 7, **kwargs)
    out = net(torch.randn(5, *shape))
    assert out.shape == (5, 7)
    assert torch.isfinite(out).all()


def test_sgd_steps_reduce_loss(case):
    cls, shape, kwargs = case
    torch.manual_seed(0)
    net = cls(shape, 3, **kwargs)
    # One random template per class plus noise: learnable through any norm or pooling.
    y = torch.arange(8) % 3
    x = torch.randn(3, *shape)[y] + 0.5 * torch.randn(8, *shape)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], losses


def test_functional_call_on_meta_skeleton(case):
    """The probes' forward path (meta-device copy + functional_call) gives the module's output."""
    cls, shape, kwargs = case
    torch.manual_seed(0)
    net = cls(shape, 4, **kwargs).eval()
    x = torch.randn(3, *shape)
    skeleton = copy.deepcopy(net).to("meta")
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    torch.testing.assert_close(functional_call(skeleton, state, (x,)), net(x))


def test_mlp_parameter_count_is_exact():
    net = MLP((1, 8, 8), 10, width=32, depth=3)
    assert _count(net) == (64 * 32 + 32) + 2 * (32 * 32 + 32) + (32 * 10 + 10)


def test_resnet20_option_a_matches_paper_count():
    # He et al. (2016), table 6: ResNet-20 has 0.27M parameters (269,722 with BatchNorm affines).
    net = ResNet((3, 32, 32), 10, depth=20, norm="batch", shortcut="pad")
    assert _count(net) == 269_722
    blocks = [m for m in net.modules() if type(m).__name__ == "_BasicBlock"]
    assert len(blocks) == 9


@pytest.mark.parametrize(
    ("make", "sizes"),
    [
        (lambda s: MLP((1, 8, 8), 10, width=s), (16, 32, 64)),
        (lambda s: CNN((1, 40), 10, channels=(s, 2 * s)), (4, 8, 16)),
        (lambda s: ResNet((1, 8, 8), 10, depth=8, width=s), (0.5, 1.0, 2.0)),
    ],
    ids=["MLP-width", "CNN-channels", "ResNet-width"],
)
def test_parameter_count_grows_with_width(make, sizes):
    counts = [_count(make(s)) for s in sizes]
    assert counts[0] < counts[1] < counts[2]
    # Weights between hidden layers grow quadratically, so doubling the width more than doubles.
    assert counts[2] / counts[1] > 2


def test_resnet_depth_sets_number_of_blocks():
    for depth, blocks in [(8, 3), (14, 6), (20, 9), (32, 15)]:
        net = ResNet((1, 8, 8), 10, depth=depth, width=0.25)
        assert sum(type(m).__name__ == "_BasicBlock" for m in net.modules()) == blocks


def test_resnet_without_norm_has_no_norm_layers_or_zero_filters():
    net = ResNet((3, 32, 32), 10, norm="none")
    norms = (torch.nn.BatchNorm2d, torch.nn.GroupNorm)
    assert not any(isinstance(m, norms) for m in net.modules())
    assert not list(net.buffers())
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.flatten(1).norm(dim=1).min() > 0 for c in convs)


def test_group_norm_groups_divide_channels():
    net = ResNet((3, 32, 32), 10, norm="group", width=0.75, num_groups=8)  # 12, 24, 48 channels
    groups = {
        (m.num_groups, m.num_channels) for m in net.modules() if isinstance(m, torch.nn.GroupNorm)
    }
    assert groups == {(6, 12), (8, 24), (8, 48)}


def test_cnn_pools_until_spatial_size_two():
    net = CNN((1, 8, 8), 10, channels=(4, 4, 4))
    pools = [isinstance(stage[-1], torch.nn.MaxPool2d) for stage in net.features]
    assert pools == [True, True, False]  # 8 -> 4 -> 2, then no further pooling
    assert net.head.in_features == 4 * 2 * 2


BAD_ARGS = [
    (MLP, (1, 8, 8), {"depth": 0}, "model.depth"),
    (MLP, (1, 8, 8), {"width": 0}, "model.width"),
    (MLP, (1, 8, 8), {"activation": "sigmoid"}, r"model.activation.*'gelu', 'relu', 'tanh'"),
    (MLP, (1, 8, 8), {"dropout": 1.0}, "model.dropout"),
    (MLP, (), {}, "model.input_shape"),
    (CNN, (1, 8, 8), {"channels": ()}, "model.channels"),
    (CNN, (1, 8, 8), {"channels": (8, 0)}, "model.channels"),
    (CNN, (1, 8, 8), {"kernel_size": 4}, "model.kernel_size"),
    (CNN, (1, 8, 8), {"norm": "layer"}, r"model.norm.*'none', 'batch', 'group'"),
    (CNN, (1, 8, 8), {"pool": "max"}, "model.pool"),
    (CNN, (1, 8, 8), {"hidden": 0}, "model.hidden"),
    (CNN, (1, 8, 8), {"num_groups": 0}, "model.num_groups"),
    (CNN, (1, 2, 8, 8), {}, "model.input_shape"),
    (ResNet, (1, 8, 8), {"depth": 18}, r"model.depth: got 18; expected .*\(depth - 2\) % 6 == 0"),
    (ResNet, (1, 8, 8), {"depth": 2}, "model.depth"),
    (ResNet, (1, 8, 8), {"width": 0.0}, "model.width"),
    (ResNet, (1, 8, 8), {"norm": "layer"}, r"model.norm.*'batch', 'group', 'none'"),
    (ResNet, (1, 8, 8), {"shortcut": "identity"}, "model.shortcut"),
    (ResNet, (40,), {}, "model.input_shape"),
    (ResNet, (1, 2, 8, 8), {}, "model.input_shape"),
    (ResNet, (1, 8, 8), {"num_groups": 0}, "model.num_groups"),
]


@pytest.mark.parametrize(
    ("cls", "shape", "kwargs", "match"),
    BAD_ARGS,
    ids=[f"{c.__name__}-{k or s}" for c, s, k, _ in BAD_ARGS],
)
def test_bad_arguments_raise_config_error(cls, shape, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        cls(shape, 10, **kwargs)


def test_bad_num_classes_raises():
    for cls in (MLP, CNN, ResNet):
        with pytest.raises(ConfigError, match=r"model\.num_classes"):
            cls((1, 8, 8), 0)


@pytest.mark.parametrize(("name", "cls"), [("mlp", MLP), ("cnn", CNN), ("resnet", ResNet)])
def test_yaml_lists_every_key_with_its_default(name, cls):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    keys = {k: v for k, v in OmegaConf.to_container(cfg).items() if not k.startswith("_")}
    params = inspect.signature(cls).parameters
    defaults = {k: p.default for k, p in params.items() if k not in ("input_shape", "num_classes")}
    assert set(keys) == set(defaults)
    for key, value in keys.items():
        expected = defaults[key]
        assert (tuple(value) if isinstance(value, list) else value) == expected, key

    net = instantiate(cfg)(input_shape=(1, 8, 8), num_classes=10)
    assert isinstance(net, cls)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_resnet_layers_follow_the_input_shape():
    one_d = ResNet((1, 40), 10, depth=8)
    two_d = ResNet((1, 8, 8), 10, depth=8)
    kinds = {type(m) for m in one_d.modules()}
    assert torch.nn.Conv1d in kinds and torch.nn.BatchNorm1d in kinds
    assert torch.nn.Conv2d not in kinds and torch.nn.BatchNorm2d not in kinds
    assert [n for n, _ in one_d.named_parameters()] == [n for n, _ in two_d.named_parameters()]
    assert one_d.stem.conv.weight.shape == (16, 1, 3)
