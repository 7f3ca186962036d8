import pytest
import torch

from lsuite.errors import ConfigError
from lsuite.probes.weight_anchors import WeightHistory, check_spec, load_weights, match_keys

LIKE = {"net.0.weight": torch.zeros(2, 3), "net.0.bias": torch.zeros(2)}


def state(prefix):
    return {f"{prefix}0.weight": torch.ones(2, 3), f"{prefix}0.bias": torch.ones(2)}


@pytest.mark.parametrize("prefix", ["net.", "model.net.", "", "net._orig_mod."])
def test_keys_match_up_to_one_prefix(prefix):
    source = (
        state(prefix)
        if prefix != "net._orig_mod."
        else {
            "net._orig_mod.0.weight": torch.ones(2, 3),
            "net._orig_mod.0.bias": torch.ones(2),
        }
    )
    if prefix == "":
        source = {"0.weight": torch.ones(2, 3), "0.bias": torch.ones(2)}
    out = match_keys(source, LIKE)
    assert set(out) == set(LIKE) and all(torch.equal(v, torch.ones_like(v)) for v in out.values())


def test_unfitting_keys_name_examples():
    with pytest.raises(ConfigError, match=r"model keys such as \['net.0.weight', 'net.0.bias'\]"):
        match_keys({"encoder.weight": torch.ones(1)}, LIKE)


def test_load_weights_casts_to_the_reference(tmp_path):
    like = {k: v.double() for k, v in LIKE.items()}
    torch.save({"state_dict": state("net."), "epoch": 1}, tmp_path / "a.ckpt")
    out = load_weights(tmp_path / "a.ckpt", like)
    assert all(v.dtype == torch.float64 for v in out.values())
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read"):
        load_weights(tmp_path / "bad.pt", like)
    torch.save([torch.ones(1)], tmp_path / "list.pt")
    with pytest.raises(ConfigError, match="holds no state dict"):
        load_weights(tmp_path / "list.pt", like)


def test_history_keeps_what_the_specs_need():
    history = WeightHistory(["init", "epoch:1"])
    for step, epoch in ((0, 0), (5, 0), (10, 1), (15, 2)):
        history.observe({"w": torch.full((1,), float(step))}, step=step, epoch=epoch)
    assert [o.step for o in history.observations] == [0, 10]
    like = {"w": torch.zeros(1)}
    assert history.resolve("init", like, {}, "start")["w"].item() == 0.0
    assert history.resolve("epoch:1", like, {}, "start")["w"].item() == 10.0
    assert history.resolve("current", like, {}, "start") is like
    anchor = {"w": torch.full((1,), 7.0)}
    assert history.resolve("init", like, {"init": anchor}, "start")["w"].item() == 7.0
    everything = WeightHistory(["middle"])
    for step, epoch in ((0, 0), (5, 0), (10, 1), (15, 2)):
        everything.observe({"w": torch.full((1,), float(step))}, step=step, epoch=epoch)
    assert everything.resolve("middle", like, {}, "points")["w"].item() == 10.0
    with pytest.raises(ConfigError, match="'step:7' has not been observed"):
        everything.resolve("step:7", like, {}, "start")


def test_specs_are_checked():
    assert check_spec("epoch:3", "start") == "epoch:3"
    for bad in (None, "", "epoch:-1", "step:1.5"):
        with pytest.raises(ConfigError, match="start: got"):
            check_spec(bad, "start")
