"""Tests for lsuite.optim.schedulers and the optimizer and scheduler YAMLs."""

import inspect
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lsuite.errors import ConfigError
from lsuite.optim import schedulers
from lsuite.optim.schedulers import constant_with_warmup, cosine, step

CONF = Path(__file__).resolve().parents[2] / "conf"
BASE_LR = 0.1


def _optimizer(lrs=(BASE_LR,)):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0])


def _lrs(make, total_steps, lrs=(BASE_LR,)):
    """Return the lr of every group at optimizer steps s = 0 .. total_steps, shape (T + 1, G)."""
    optimizer = _optimizer(lrs)
    scheduler = make(optimizer, total_steps)
    values = []
    for _ in range(total_steps + 1):
        values.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return values


def _cosine_closed_form(s, total, warmup=0, ratio=0.0):
    if s < warmup:
        return s / warmup
    progress = (s - warmup) / (total - warmup)
    return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def test_cosine_start_half_end():
    lrs = _lrs(cosine, 100)
    assert lrs[0][0] == pytest.approx(BASE_LR)
    assert lrs[50][0] == pytest.approx(BASE_LR / 2)
    assert lrs[100][0] == pytest.approx(0.0, abs=1e-12)
    assert lrs[25][0] == pytest.approx(BASE_LR * (1 + math.cos(math.pi / 4)) / 2)


def test_cosine_min_lr_ratio_applies_per_param_group():
    lrs = _lrs(lambda o, t: cosine(o, t, min_lr_ratio=0.1), 40, lrs=(0.1, 0.02))
    for group, base in enumerate((0.1, 0.02)):
        assert lrs[0][group] == pytest.approx(base)
        assert lrs[20][group] == pytest.approx(base * (0.1 + 0.9 * 0.5))
        assert lrs[40][group] == pytest.approx(base * 0.1)


@pytest.mark.parametrize(
    "kwargs", [{"warmup_steps": 10}, {"warmup_fraction": 0.1}], ids=["warmup_steps", "fraction"]
)
def test_warmup_ramp_then_cosine(kwargs):
    lrs = _lrs(lambda o, t: cosine(o, t, min_lr_ratio=0.2, **kwargs), 100)
    assert [lrs[s][0] for s in (0, 5, 9)] == pytest.approx([0.0, 0.05, 0.09])
    assert lrs[10][0] == pytest.approx(BASE_LR)  # peak right after warmup
    assert lrs[55][0] == pytest.approx(BASE_LR * (0.2 + 0.8 * 0.5))  # half-way through the decay
    assert lrs[100][0] == pytest.approx(BASE_LR * 0.2)
    expected = [BASE_LR * _cosine_closed_form(s, 100, 10, 0.2) for s in range(101)]
    assert [v[0] for v in lrs] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_constant_with_warmup():
    lrs = _lrs(lambda o, t: constant_with_warmup(o, t, warmup_steps=4), 10)
    assert [v[0] for v in lrs] == pytest.approx([0.0, 0.025, 0.05, 0.075] + [BASE_LR] * 7)


def test_step_milestones():
    lrs = _lrs(step, 100)  # defaults: milestones at 50 % and 75 %, gamma 0.1
    assert lrs[0][0] == pytest.approx(BASE_LR)
    assert lrs[49][0] == pytest.approx(BASE_LR)
    assert lrs[50][0] == pytest.approx(BASE_LR * 0.1)
    assert lrs[74][0] == pytest.approx(BASE_LR * 0.1)
    assert lrs[75][0] == pytest.approx(BASE_LR * 0.01)
    assert lrs[100][0] == pytest.approx(BASE_LR * 0.01)


def test_step_custom_milestones_round_to_steps():
    lrs = _lrs(lambda o, t: step(o, t, milestones=[0.3], gamma=0.5), 10)
    assert [v[0] for v in lrs] == pytest.approx([BASE_LR] * 3 + [BASE_LR / 2] * 8)


def test_cosine_resumes_from_state_dict():
    reference = _lrs(lambda o, t: cosine(o, t, warmup_steps=5), 30)
    optimizer = _optimizer()
    first = cosine(optimizer, 30, warmup_steps=5)
    for _ in range(12):
        optimizer.step()
        first.step()
    # A checkpoint holds both states; the optimizer's param groups carry the current lr.
    optimizer_state, state = optimizer.state_dict(), first.state_dict()
    assert state["lr_lambdas"] == [{"warmup": 5, "total": 30, "min_ratio": 0.0}]

    optimizer = _optimizer()
    resumed = cosine(optimizer, 30, warmup_steps=5)
    optimizer.load_state_dict(optimizer_state)
    resumed.load_state_dict(state)
    values = []
    for _ in range(12, 31):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        resumed.step()
    assert values == pytest.approx([v[0] for v in reference[12:]])


BAD_ARGS = [
    (cosine, {"total_steps": 0}, r"scheduler\.total_steps: got 0"),
    (cosine, {"warmup_steps": -1}, r"scheduler\.warmup_steps"),
    (cosine, {"warmup_fraction": 1.0}, r"scheduler\.warmup_fraction"),
    (cosine, {"warmup_steps": 5, "warmup_fraction": 0.1}, r"scheduler\.warmup_fraction.*only one"),
    (cosine, {"warmup_steps": 100}, r"scheduler\.warmup_steps: got 100; expected fewer"),
    (cosine, {"min_lr_ratio": 1.5}, r"scheduler\.min_lr_ratio"),
    (constant_with_warmup, {"warmup_fraction": -0.1}, r"scheduler\.warmup_fraction"),
    (step, {"milestones": [0.75, 0.5]}, r"scheduler\.milestones.*increasing"),
    (step, {"milestones": [0.5, 1.0]}, r"scheduler\.milestones"),
    (step, {"milestones": []}, r"scheduler\.milestones"),
    (step, {"gamma": 0.0}, r"scheduler\.gamma"),
    (step, {"total_steps": 2.5}, r"scheduler\.total_steps"),
]


@pytest.mark.parametrize(
    ("make", "kwargs", "match"),
    BAD_ARGS,
    ids=[f"{m.__name__}-{k}" for m, k, _ in BAD_ARGS],
)
def test_bad_arguments_raise_config_error(make, kwargs, match):
    kwargs = {"total_steps": 100, **kwargs}
    with pytest.raises(ConfigError, match=match):
        make(_optimizer(), **kwargs)


@pytest.mark.parametrize("name", ["cosine", "warmup_cosine", "step"])
def test_scheduler_yaml_builds_a_step_scheduler(name):
    cfg = OmegaConf.load(CONF / "scheduler" / f"{name}.yaml")
    function = getattr(schedulers, cfg._target_.rsplit(".", 1)[1])
    keys = {k for k in cfg if not k.startswith("_")}
    assert keys == set(inspect.signature(function).parameters) - {"optimizer", "total_steps"}

    optimizer = _optimizer()
    scheduler = instantiate(cfg)(optimizer, total_steps=100)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    for _ in range(100):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] < BASE_LR


def test_warmup_cosine_yaml_warms_up():
    optimizer = _optimizer()
    instantiate(OmegaConf.load(CONF / "scheduler" / "warmup_cosine.yaml"))(optimizer, 100)
    assert optimizer.param_groups[0]["lr"] == 0.0


def test_none_yaml_removes_the_scheduler():
    cfg = OmegaConf.load(CONF / "scheduler" / "none.yaml")
    assert cfg == {"scheduler": None}
    assert (CONF / "scheduler" / "none.yaml").read_text().startswith("# @package _global_")


@pytest.mark.parametrize(
    ("name", "cls"),
    [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)],
)
def test_optimizer_yaml_builds_from_params(name, cls):
    cfg = OmegaConf.load(CONF / "optim" / f"{name}.yaml")
    params = [torch.nn.Parameter(torch.ones(3))]
    optimizer = instantiate(cfg)(params=params)
    assert type(optimizer) is cls
    assert optimizer.param_groups[0]["lr"] == cfg.lr
    params[0].sum().backward()
    optimizer.step()
    assert (params[0] < 1).all()
