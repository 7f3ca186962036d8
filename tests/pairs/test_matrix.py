import pytest

from lsuite.errors import ConfigError
from lsuite.pairs.heatmap import plot_pair_heatmaps
from lsuite.pairs.matrix import pair_matrix, read_matrix_csv, write_matrix_csv


def test_pair_matrix_is_symmetric_with_zero_diagonal():
    m = pair_matrix(3, {(0, 1): 0.5, (0, 2): 1.0, (1, 2): 2.0})
    assert m == [[0.0, 0.5, 1.0], [0.5, 0.0, 2.0], [1.0, 2.0, 0.0]]


def test_pair_matrix_rejects_missing_and_bad_pairs():
    with pytest.raises(ConfigError, match=r"no value for pair \(1, 2\)"):
        pair_matrix(3, {(0, 1): 0.5, (0, 2): 1.0})
    with pytest.raises(ConfigError, match=r"got pair \(2, 1\)"):
        pair_matrix(2, {(0, 1): 0.5, (2, 1): 1.0})


def test_csv_round_trip_and_heatmap(tmp_path):
    labels = ["a", "b", "c"]
    m = pair_matrix(3, {(0, 1): 0.125, (0, 2): 1.0 / 3.0, (1, 2): 2.0})
    path = write_matrix_csv(tmp_path / "m.csv", labels, m)
    assert path.read_text().splitlines()[0] == "point,a,b,c"
    assert read_matrix_csv(path) == (labels, m)
    png = plot_pair_heatmaps(tmp_path / "m.png", labels, {"loss barrier": m, "error": m})
    assert png.read_bytes()[:4] == b"\x89PNG"
