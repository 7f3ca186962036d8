"""Curve tables of interpolation, line and spectrum records (the wandb line plots' data)."""

from lsuite.results.curves import curve_table

INTERPOLATION = {
    "probe": "interpolation",
    "kind": "InterpolationResult",
    "step": 12,
    "alpha": [0.0, 0.5, 1.0],
    "loss": {"train": [2.0, 1.5, 0.5], "val": [2.0, "nan", 0.7]},
    "accuracy": {"train": [0.1, 0.5, 0.9], "val": [0.1, 0.4, 0.8]},
}
LINE = {
    "probe": "line",
    "kind": "LineResult",
    "step": 3,
    "t": [-1.0, 0.0, 1.0],
    "directions": ["random", "radial"],
    "loss": {
        "random": {"train": [1.0, 0.5, 1.1]},
        "radial": {"train": [2.0, 0.5, "inf"]},
    },
    "accuracy": None,
}
SPECTRUM = {
    "probe": "hessian_spectrum",
    "kind": "HessianSpectrumResult",
    "grid": [-1.0, 0.0, 1.0, 2.0],
    "density": [0.0, 0.7, 0.2, 0.1],
}


def test_interpolation_table():
    table = curve_table(INTERPOLATION)
    assert table.columns == ["alpha", "split", "loss", "accuracy"]
    assert (table.x, table.y, table.series) == ("alpha", "loss", "split")
    assert table.rows[:3] == [
        [0.0, "train", 2.0, 0.1],
        [0.5, "train", 1.5, 0.5],
        [1.0, "train", 0.5, 0.9],
    ]
    assert table.rows[4] == [0.5, "val", None, 0.4]  # NaN becomes an empty cell
    assert table.title == "interpolation at step 12"


def test_line_table_has_one_series_per_direction_and_split():
    table = curve_table(LINE)
    assert table.series == "series"
    assert {row[3] for row in table.rows} == {"random/train", "radial/train"}
    assert len(table.rows) == 6
    assert table.rows[-1] == [1.0, "radial", "train", "radial/train", None, None]


def test_spectrum_table():
    table = curve_table(SPECTRUM)
    assert table.columns == ["eigenvalue", "density"]
    assert table.series is None
    assert table.rows[1] == [0.0, 0.7]


def test_other_records_have_no_table():
    assert curve_table({"kind": "HessianTraceResult", "trace": 1.0}) is None
    assert curve_table({}) is None
