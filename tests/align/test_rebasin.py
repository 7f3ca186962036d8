"""experiment=rebasin: two independent pairs per width in a flat sweep; the table and figure."""

import importlib.util
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lsuite.config.paths import config_dir

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("rebasin", ROOT / "scripts" / "rebasin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sweep_has_two_disjoint_pairs_per_width_in_one_level():
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=rebasin"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params["model.width"] == "32,128,512" and params.seed == "0,1,2,3"
    from omegaconf import OmegaConf

    subdir = OmegaConf.to_container(cfg.hydra.sweep, resolve=False)["subdir"]
    assert "/" not in subdir  # lsuite-report reads the sweep's children
    assert not cfg.get("probes")  # no in-training record competes with the pair's


def _record(job, naive, weight):
    result = {
        "loss_barrier": {"val": naive[0]},
        "error_barrier": {"val": naive[1]},
        "curves": ["weight"],
        "aligned_loss_barrier": {"weight": {"val": weight[0]}},
        "aligned_error_barrier": {"weight": {"val": weight[1]}},
    }
    (job / "probes").mkdir(parents=True)
    line = {"schema": 2, "meta": {"source": "lsuite-probe"}, "result": result}
    (job / "probes" / "interpolation.jsonl").write_text(json.dumps(line) + "\n")


def test_table_and_figure_average_the_pairs(tmp_path):
    script = load_script()
    for number, (width, seed) in enumerate([(w, s) for w in (32, 128) for s in range(4)]):
        job = tmp_path / f"{number}_width{width}_seed{seed}"
        job.mkdir()
        if seed % 2:
            _record(job, (1.0 + seed, 0.4), (0.1 * seed, 0.02))
    table = script.summarise(tmp_path, "val")
    assert sorted(table) == [32, 128]
    assert table[32]["naive"] == [(2.0, 0.4), (4.0, 0.4)]
    assert script.mean_se([2.0, 4.0]) == pytest.approx((3.0, 1.0))
    text = script.markdown(table)
    assert "| 32 | 2 | 3.000 ± 1.000 / 40.0 ± 0.0% | 0.200 ± 0.100 / 2.0 ± 0.0% |" in text
    assert script.figure(table, "val", tmp_path / "figure.png").is_file()
