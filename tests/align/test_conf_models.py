"""Every model YAML in conf/model/ gets a traced spec whose permutations preserve the function."""

import copy
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lsuite.align import apply_permutation, permutation_spec, random_perms

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
SHAPES = {"mlp": [(1, 8, 8), (40,)], "cnn": [(1, 40), (1, 8, 8)], "resnet": [(1, 8, 8), (1, 40)]}


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_conf_model_is_aligned_without_a_hand_written_spec(path):
    assert path.stem in SHAPES, f"add input shapes for conf/model/{path.name}"
    for shape in SHAPES[path.stem]:
        torch.manual_seed(0)
        model = instantiate(OmegaConf.load(path))(input_shape=shape, num_classes=10)
        model = model.double().eval()
        x = torch.randn(4, *shape, dtype=torch.float64)
        spec = permutation_spec(model, x)
        assert spec.groups
        other = copy.deepcopy(model)
        perms = random_perms(spec, torch.Generator().manual_seed(0))
        other.load_state_dict(apply_permutation(spec, perms, model.state_dict()))
        with torch.no_grad():
            torch.testing.assert_close(other(x), model(x), rtol=1e-10, atol=1e-12)
