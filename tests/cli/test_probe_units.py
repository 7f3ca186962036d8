"""lsuite-probe's pieces in process: overrides on a run's config, checkpoints, weights files."""

import sys

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from lsuite.config.run_checkpoints import find_checkpoints
from lsuite.config.run_dir import apply_overrides, split_overrides, sweep_runs
from lsuite.config.weights_file import match_state
from lsuite.errors import ConfigError
from lsuite.probe import parse


def test_split_overrides_keeps_order():
    probes, others = split_overrides(
        ["probes=[a]", "trainer.devices=2", "+probes.a.x=1", "probes.a.probe.k=3", "~data.x"]
    )
    assert probes == ["probes=[a]", "+probes.a.x=1", "probes.a.probe.k=3"]
    assert others == ["trainer.devices=2", "~data.x"]


def test_apply_overrides_sets_known_keys_and_names_unknown_ones():
    cfg = OmegaConf.create({"trainer": {"devices": 1}, "model": {"_target_": "x", "width": 8}})
    apply_overrides(cfg, ["trainer.devices=2", "model.width=16", "+trainer.extra=[1,2]"])
    assert cfg.trainer.devices == 2 and cfg.model.width == 16 and list(cfg.trainer.extra) == [1, 2]
    with pytest.raises(ConfigError, match=r"trainer.nope: unknown key 'nope'; expected one of"):
        apply_overrides(cfg, ["trainer.nope=1"])
    with pytest.raises(ConfigError, match="cannot be swapped"):
        apply_overrides(cfg, ["model=cnn"])
    with pytest.raises(ConfigError, match="expected one value"):
        apply_overrides(cfg, ["trainer.devices=1,2"])


def _save(path, step, epoch):
    torch.save({"state_dict": {"w": torch.zeros(1)}, "global_step": step, "epoch": epoch}, path)


def test_find_checkpoints_all_in_step_order(tmp_path):
    _save(tmp_path / "last.ckpt", 30, 2)
    _save(tmp_path / "b.ckpt", 10, 0)
    _save(tmp_path / "a.ckpt", 30, 2)
    _save(tmp_path / "c.ckpt", 20, 1)
    found = find_checkpoints(tmp_path, ["all"])
    assert [c.path.name for c in found] == ["b.ckpt", "c.ckpt", "a.ckpt", "last.ckpt"]
    assert [c.step for c in found] == [10, 20, 30, 30]
    assert [c.path.name for c in find_checkpoints(tmp_path, ["last", "c.ckpt"])] == [
        "last.ckpt",
        "c.ckpt",
    ]
    with pytest.raises(ConfigError, match="no best checkpoint"):
        find_checkpoints(tmp_path, ["best"])
    with pytest.raises(ConfigError, match=r"no \.ckpt files"):
        find_checkpoints(tmp_path / "empty", ["all"])


def test_sweep_runs_skips_hydra_dirs_and_sorts_numerically(tmp_path):
    for name in ("10", "2", "1_x"):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / "config.yaml").write_text("a: 1\n")
        (tmp_path / name / ".hydra" / "config.yaml").write_text("a: 1\n")
    wandb = tmp_path / "2" / "wandb" / "offline-run-x" / "files"
    wandb.mkdir(parents=True)
    (wandb / "config.yaml").write_text("a: 1\n")
    assert [p.name for p in sweep_runs(tmp_path)] == ["2", "10", "1_x"]


def test_match_state_one_prefix_and_one_line_errors(tmp_path):
    model = {f"net.{k}": v for k, v in nn.Linear(3, 2).state_dict().items()}
    path = tmp_path / "f.pt"
    plain = {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}
    assert match_state(model, plain, path).keys() == model.keys()
    other = {"model.weight": torch.zeros(2, 3), "model.bias": torch.zeros(2)}
    assert match_state(model, other, path).keys() == model.keys()
    wrong = {"weight": torch.zeros(4, 3), "bias": torch.zeros(2)}
    with pytest.raises(ConfigError, match=r"'weight' has shape \(4, 3\); the model's 'net.weight'"):
        match_state(model, wrong, path)
    with pytest.raises(ConfigError, match=r"has no key 'bias'.*model shape \(2,\)"):
        match_state(model, {"weight": torch.zeros(2, 3)}, path)
    extra = {**plain, "extra.w": torch.zeros(5)}
    with pytest.raises(ConfigError, match=r"unexpected key 'extra.w' \(file shape \(5,\)"):
        match_state(model, extra, path)
    for error in (wrong, extra):
        with pytest.raises(ConfigError) as info:
            match_state(model, error, path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_parse_moves_overrides_after_ckpt_and_checks_combinations(capsys):
    ns = parse(["runs/a", "--ckpt", "a.ckpt", "b.ckpt", "probes=[x]"])
    assert ns.ckpt == ["a.ckpt", "b.ckpt"] and ns.overrides == ["probes=[x]"]
    assert str(ns.target) == "runs/a"
    ns = parse(["sweep", "--pairs", "probes=[x]", "--no-progress", "a.b=1"])
    assert ns.pairs and not ns.progress and ns.overrides == ["probes=[x]", "a.b=1"]
    assert str(ns.target) == "sweep" and ns.ckpt is None
    for argv in ([], ["--weights", "f.pt", "runs/a"], ["a", "b"], ["runs/a", "--bogus"]):
        with pytest.raises(SystemExit) as info:
            parse(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("lsuite-probe: error: ")


def test_checkpoint_progress_counts_steps_on_a_terminal(monkeypatch, capsys):
    from lsuite.config.probe_progress import checkpoint_progress

    with checkpoint_progress(True, 2) as advance:  # captured stderr is no terminal: silent
        advance("a")
        advance(None)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with checkpoint_progress(True, 2) as advance:
        advance("last.ckpt: hessian_trace")
        advance("last.ckpt: interpolation")
        advance(None)
    assert "2/2" in capsys.readouterr().err


def test_parse_takes_a_sweep_job_directory_named_after_overrides(tmp_path):
    job = tmp_path / "0_data_seed=1,optim=sam"
    job.mkdir()
    ckpt = job / "step=10.ckpt"
    ckpt.touch()
    ns = parse([str(job), "--ckpt", str(ckpt), "probes=[x]"])
    assert ns.target == job and ns.ckpt == [str(ckpt)] and ns.overrides == ["probes=[x]"]
