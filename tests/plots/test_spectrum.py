import json
import os

import pytest
import torch
from torch import nn

from lsuite.errors import ConfigError
from lsuite.plots.spectrum import plot_spectrum
from lsuite.probes.hessian_spectrum import HessianSpectrum


@pytest.fixture(scope="module")
def record():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
    result = HessianSpectrum(num_runs=2, lanczos_steps=10, num_points=64).measure(model, batches)
    return {
        **json.loads(json.dumps(result.to_dict())),
        "step": 7,
        "epoch": 1,
        "name": "hessian_spectrum",
    }


@pytest.mark.parametrize("log_scale", [True, False])
@pytest.mark.parametrize("suffix", [".png", ".pdf"])
def test_writes_the_plot_atomically(tmp_path, record, log_scale, suffix):
    path = tmp_path / "plots" / f"spectrum{suffix}"
    assert plot_spectrum(record, path, log_scale=log_scale) == path
    assert path.stat().st_size > 1000
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind


def test_overwrites_an_existing_plot(tmp_path, record):
    path = tmp_path / "spectrum.png"
    path.write_bytes(b"old")
    plot_spectrum(record, path)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_rejects_a_record_without_a_density(tmp_path):
    with pytest.raises(ConfigError, match=r"^record: got grid of 0 and density of 0 values"):
        plot_spectrum({"trace": 1.0}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
