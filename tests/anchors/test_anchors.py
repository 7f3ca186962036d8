import copy

import pytest
import torch

from lsuite.anchors import (
    WeightHistory,
    check_reachable,
    load_point,
    match_keys,
    needs_history,
    parse_spec,
    resolve_points,
)
from lsuite.errors import ConfigError

LIKE = {"net.0.weight": torch.zeros(2, 3), "net.0.bias": torch.zeros(2)}


def state(prefix):
    return {f"{prefix}0.weight": torch.ones(2, 3), f"{prefix}0.bias": torch.ones(2)}


@pytest.mark.parametrize("prefix", ["net.", "model.net.", "", "net._orig_mod."])
def test_keys_match_up_to_one_prefix(prefix):
    source = state(prefix)
    out = match_keys(source, LIKE)
    assert set(out) == set(LIKE) and all(torch.equal(v, torch.ones_like(v)) for v in out.values())


def test_unfitting_keys_name_examples():
    with pytest.raises(ConfigError, match=r"model keys such as \['net.0.weight', 'net.0.bias'\]"):
        match_keys({"encoder.weight": torch.ones(1)}, LIKE)


@pytest.mark.parametrize(
    ("text", "kind", "number"),
    [
        ("init", "init", None),
        ("middle", "middle", None),
        ("current", "current", None),
        ("final", "current", None),
        ("trajectory", "trajectory", None),
        ("epoch:3", "epoch", 3),
        ("step:120", "step", 120),
    ],
)
def test_keyword_specs_parse(text, kind, number):
    spec = parse_spec(text, "start")
    assert (spec.kind, spec.number, spec.text) == (kind, number, text)


@pytest.mark.parametrize("bad", [None, "", "epoch:-1", "step:1.5", "foo", 3])
def test_bad_specs_name_the_key(bad):
    with pytest.raises(ConfigError, match="start: got"):
        parse_spec(bad, "start")


def test_files_are_checked_when_parsed(tmp_path):
    torch.save({"state_dict": state("net."), "epoch": 1}, tmp_path / "a.ckpt")
    assert parse_spec(str(tmp_path / "a.ckpt"), "start").kind == "file"
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="start: cannot read"):
        parse_spec(str(tmp_path / "bad.pt"), "start")
    with pytest.raises(ConfigError, match=r"start: got .*; no such file or directory"):
        parse_spec(str(tmp_path / "missing.ckpt"), "start")
    torch.save([torch.ones(1)], tmp_path / "list.pt")
    with pytest.raises(ConfigError, match="holds no state dict"):
        load_point(str(tmp_path / "list.pt"), LIKE)


def make_run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name, value, step in (
        ("last.ckpt", 3.0, 20),
        ("best-epoch001.ckpt", 2.0, 10),
        ("epoch=0-step=5.ckpt", 1.0, 5),
    ):
        weights = {"net.0.weight": torch.full((2, 3), value), "net.0.bias": torch.zeros(2)}
        buffers = {"net.1.running_mean": torch.full((2,), value)}
        torch.save(
            {"state_dict": {**weights, **buffers}, "global_step": step}, run / "checkpoints" / name
        )
    return run


def test_run_directories_name_their_checkpoints(tmp_path):
    run = make_run(tmp_path)
    like_buffers = {"net.1.running_mean": torch.zeros(2, dtype=torch.float64)}
    for text, value in (
        (str(run), 3.0),
        (f"{run}:last", 3.0),
        (f"{run}:best", 2.0),
        (f"{run}:step:5", 1.0),
    ):
        spec = parse_spec(text, "start")
        assert spec.kind == "run"
        params, buffers = load_point(spec, LIKE, like_buffers)
        assert params["net.0.weight"].unique().item() == value
        assert buffers["net.1.running_mean"].dtype == torch.float64
        assert buffers["net.1.running_mean"].unique().item() == value
    with pytest.raises(ConfigError, match=r"start: got '.*:step:7'; no step checkpoint"):
        parse_spec(f"{run}:step:7", "start")
    (run / "checkpoints" / "best-epoch002.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError, match="several best checkpoint"):
        parse_spec(f"{run}:best", "start")


def test_a_file_that_does_not_fit_names_the_first_key_shapes_and_file(tmp_path):
    torch.save({"net.0.weight": torch.zeros(4, 3), "net.0.bias": torch.zeros(2)}, tmp_path / "w.pt")
    with pytest.raises(ConfigError, match=r"w\.pt\).*'net.0.weight' has shape \(4, 3\).*\(2, 3\)"):
        load_point(str(tmp_path / "w.pt"), LIKE)


def test_history_keeps_what_the_specs_need():
    history = WeightHistory(["init", "epoch:1"])
    for step, epoch in ((0, 0), (5, 0), (10, 1), (15, 2)):
        history.observe(
            {"w": torch.full((1,), float(step))},
            {"b": torch.full((1,), -float(step))},
            step=step,
            epoch=epoch,
        )
    assert [o.step for o in history.observations] == [0, 10]
    like = {"w": torch.zeros(1, dtype=torch.float64)}
    assert history.resolve("init", like)["w"].item() == 0.0
    assert history.resolve("epoch:1", like)["w"].dtype == torch.float64
    assert history.resolve("epoch:1", like)["w"].item() == 10.0
    assert history.resolve("current", like) is like
    _, buffers = history.resolve_point("epoch:1", like, {"b": torch.zeros(1)})
    assert buffers["b"].item() == -10.0
    restored = WeightHistory(["init", "epoch:1"])
    restored.load_state_dict(copy.deepcopy(history.state_dict()))
    assert restored.resolve_point("init", like, {"b": torch.zeros(1)})[1]["b"].item() == 0.0
    everything = WeightHistory(["middle"])
    for step, epoch in ((0, 0), (5, 0), (10, 1), (15, 2)):
        everything.observe({"w": torch.full((1,), float(step))}, step=step, epoch=epoch)
    assert everything.resolve("middle", like)["w"].item() == 10.0
    with pytest.raises(ConfigError, match="start: 'step:7' has not been observed"):
        everything.resolve("step:7", like, "start")
    assert not WeightHistory(["current"]).needed and WeightHistory(["init"]).needed


def test_needs_history_and_reachability():
    assert needs_history("init") and needs_history(["current", "epoch:1"])
    assert not needs_history("current") and not needs_history(["current"])
    check_reachable("epoch:1", 2, -1, "start")
    with pytest.raises(ConfigError, match=r"start: got 'epoch:100'; the run has max_epochs=2"):
        check_reachable("epoch:100", 2, -1, "start")
    with pytest.raises(ConfigError, match="max_steps=50"):
        check_reachable(["init", "step:60"], None, 50, "points")
    check_reachable("epoch:100", -1, None, "start")  # unlimited


def test_resolve_points_gives_run_keywords(tmp_path):
    torch.save(state("net."), tmp_path / "w.pt")
    history = WeightHistory(["init", "trajectory"])
    history.observe(state("net."), step=0, epoch=0)
    points = resolve_points(
        {
            "start": "init",
            "points": ["current", str(tmp_path / "w.pt")],
            "trajectory": "trajectory",
        },
        LIKE,
        history=history,
    )
    assert points["start"]["net.0.bias"].tolist() == [1.0, 1.0]
    assert points["points"][0] is LIKE and points["points"][1]["net.0.weight"].sum() == 6
    assert [o.step for o in points["trajectory"]] == [0]
    with pytest.raises(ConfigError, match="start: 'init' names weights seen during training"):
        resolve_points({"start": "init"}, LIKE)
