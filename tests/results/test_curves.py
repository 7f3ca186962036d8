"""Curve tables of interpolation, line and spectrum records (the wandb line plots' data)."""

import dataclasses
import math

from result_cases import META, flat_record, results, through_json

from lsuite.results.curves import curve_table
from lsuite.results.records import make_failure_record, make_record, read_record


def record(name, **changes):
    result = dataclasses.replace(results()[name], **changes)
    return read_record(through_json(make_record({**META, "probe": name}, result)))


def test_interpolation_table():
    result = results()["interpolation"]
    val = list(result.loss["val"])
    val[2] = math.nan
    table = curve_table(record("interpolation", loss={**result.loss, "val": val}))
    assert table.columns == ["alpha", "split", "loss", "accuracy"]
    assert (table.x, table.y, table.series) == ("alpha", "loss", "split")
    n = len(result.alpha)
    assert len(table.rows) == 2 * n
    assert table.rows[0] == [0.0, "train", result.loss["train"][0], result.accuracy["train"][0]]
    assert table.rows[1][:3] == [result.alpha[1], "train", result.loss["train"][1]]
    assert table.rows[n + 2][2] is None  # NaN becomes an empty cell
    assert table.title == "interpolation at step 12"


def test_line_table_has_one_series_per_direction_and_split():
    result = results()["line"]
    table = curve_table(record("line", accuracy=None))
    assert table.series == "series"
    want = {f"{d}/{s}" for d in result.directions for s in result.loss[d]}
    assert {row[3] for row in table.rows} == want
    assert len(table.rows) == len(want) * len(result.t)
    assert all(row[5] is None for row in table.rows)


def test_spectrum_table_from_an_old_flat_record():
    result = results()["hessian_spectrum"]
    table = curve_table(through_json(flat_record("hessian_spectrum", result)))
    assert table.columns == ["eigenvalue", "density"]
    assert table.series is None
    assert table.rows[1] == [result.grid[1], result.density[1]]


def test_other_records_have_no_table():
    assert curve_table(record("hessian_trace")) is None
    assert curve_table(make_failure_record({"probe": "p"}, RuntimeError("x"))) is None
