import dataclasses
import os
import stat

import pytest
import torch
from result_cases import through_json
from torch import nn

from lsuite.errors import ConfigError
from lsuite.plots.spectrum import plot_spectrum
from lsuite.probes.hessian_spectrum import HessianSpectrum, HessianSpectrumResult


@pytest.fixture(scope="module")
def record():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
    result = HessianSpectrum(num_runs=2, lanczos_steps=10, num_points=64).measure(model, batches)
    return HessianSpectrumResult.from_dict(through_json(result.to_dict()))


META = {"probe": "hessian_spectrum", "step": 7, "epoch": 1}


@pytest.mark.parametrize("log_scale", [True, False])
@pytest.mark.parametrize("suffix", [".png", ".pdf"])
def test_writes_the_plot_atomically(tmp_path, record, log_scale, suffix):
    path = tmp_path / "plots" / f"spectrum{suffix}"
    assert plot_spectrum(record, path, meta=META, log_scale=log_scale) == path
    assert path.stat().st_size > 1000
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind


def test_overwrites_an_existing_plot(tmp_path, record):
    path = tmp_path / "spectrum.png"
    path.write_bytes(b"old")
    plot_spectrum(record, path)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_the_plot_gets_a_plain_files_mode(tmp_path, record):
    """Issue 10 item 9: the spectrum PNG was 0600 (mkstemp) while every other file was 0644."""
    old = os.umask(0o022)
    try:
        path = plot_spectrum(record, tmp_path / "spectrum.png", meta=META)
        os.umask(0o027)
        strict = plot_spectrum(record, tmp_path / "strict.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(strict.stat().st_mode) == 0o640


def test_rejects_a_result_without_a_density(tmp_path, record):
    empty = dataclasses.replace(record, grid=[], density=[])
    with pytest.raises(ConfigError, match=r"^result: got grid of 0 and density of 0 values"):
        plot_spectrum(empty, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
