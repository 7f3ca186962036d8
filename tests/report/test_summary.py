"""The report's summary page on a 2x2 sweep with 2 seeds: figures, error bars, categories, notes."""

import csv
import json
import math

import pytest
import yaml
from matplotlib.container import ErrorbarContainer

from lsuite.probes.hessian_trace import HessianTraceResult
from lsuite.probes.interpolation import InterpolationResult
from lsuite.probes.plane import PlaneResult
from lsuite.report.build import report
from lsuite.report.cli import main
from lsuite.report.curves import record_curves
from lsuite.report.figures import final_figure
from lsuite.report.groups import aggregate, main_key
from lsuite.report.runs import find_runs
from lsuite.report.summary import field_points
from lsuite.report.table import final_values
from lsuite.results.jsonl import append_record
from lsuite.results.records import make_record, read_record

OPTIMS = ("sgd", "sam")
LRS = (0.01, 0.1)
SEEDS = (0, 1)


def acc(optim, lr, seed):
    return 0.5 + lr + (0.1 if optim == "sam" else 0.0) + 0.02 * seed


def trace(optim, lr, seed, step):
    return step * lr * (2.0 if optim == "sgd" else 1.0) + seed


def interpolation(optim, lr, seed):
    barrier = lr + 0.01 * seed + (0.5 if optim == "sgd" else 0.0)
    alpha = [0.0, 0.5, 1.0]
    loss = [2.0, 1.0 + barrier, 0.1 + lr]
    return InterpolationResult(
        alpha=alpha,
        loss={"train": loss},
        accuracy=None,
        loss_barrier={"train": barrier},
        loss_barrier_alpha={"train": 0.5},
        error_barrier=None,
        error_barrier_alpha=None,
        monotonic={"train": seed == 0},
        max_rise={"train": 0.0 if seed == 0 else 0.3 * lr},
        start="init",
        start_distance=10 * lr + seed,
        bn_statistics="none",
        batching="vmap",
        num_samples={"train": 64},
    )


def write_job(sweep, num, overrides, probes, metrics, records):
    """A job directory as lsuite-train leaves it: .hydra/, config.yaml, status.json, probes/."""
    name = ",".join(overrides)
    directory = sweep / f"{num}_{name}"
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {"seed": 0, "overrides": overrides, "probes": {p: {"probe": {}} for p in probes}}
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    status = {"status": "completed", "job": {"num": num, "overrides": overrides}}
    (directory / "status.json").write_text(json.dumps({**status, "metrics": metrics}))
    for probe, meta, result in records:
        meta = {"epoch": 0, "weights": "current", "source": "lsuite-train", **meta}
        append_record(directory / "probes" / f"{probe}.jsonl", make_record(meta, result))
    return directory


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """optim=sgd,sam x optim.lr=0.01,0.1 x seed=0,1; hessian_trace 3 times, interpolation once."""
    root = tmp_path_factory.mktemp("multirun") / "grid"
    num = 0
    for optim in OPTIMS:
        for lr in LRS:
            for seed in SEEDS:
                records = []
                for step in (10, 20, 30):
                    value = HessianTraceResult(
                        trace(optim, lr, seed, step), 0.5, 8, "hutchpp", True
                    )
                    meta = {"probe": "hessian_trace", "step": step, "when": "epoch"}
                    records.append(("hessian_trace", meta, value))
                meta = {"probe": "interpolation", "step": 30, "when": "fit_end"}
                records.append(("interpolation", meta, interpolation(optim, lr, seed)))
                metrics = {"test/acc": acc(optim, lr, seed), "test/loss": 1 - acc(optim, lr, seed)}
                overrides = [f"optim={optim}", f"optim.lr={lr}", f"seed={seed}"]
                probes = ["hessian_trace", "interpolation"]
                write_job(root, num, overrides, probes, metrics, records)
                num += 1
    return root


@pytest.fixture(scope="module")
def built(sweep):
    return report(sweep)


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


INTERPOLATION_FIELDS = ("start_distance", "train_loss_barrier", "train_max_rise", "train_monotonic")


def test_figure_count_and_names(built):
    names = sorted(p.name for p in built.files if p.suffix == ".png")
    finals = ["test.acc", "test.loss", "hessian_trace.trace"]
    finals += [f"interpolation.{f}" for f in INTERPOLATION_FIELDS]
    expected = [f"final_{f}.png" for f in finals]
    # Over training only for the probe measured more than once; curves once per curve probe.
    expected += ["training_hessian_trace.trace.png", "curves_interpolation.png"]
    assert names == sorted(expected)
    assert built.x == "optim.lr"  # ties on 2 values: a numeric key before a categorical one
    assert sorted(p.name for p in built.directory.glob("*.png")) == names


def test_error_bars_are_standard_errors_over_seeds(built):
    drawn = read_csv(built.directory / "figures.csv")
    acc_points = [r for r in drawn if r["field"] == "test/acc"]
    assert len(acc_points) == 4  # 2 lines (optim) x 2 values of optim.lr
    for row in acc_points:
        optim, lr = row["line"].removeprefix("optim="), float(row["x"])
        values = [acc(optim, lr, s) for s in SEEDS]
        mean = sum(values) / 2
        std = math.sqrt(sum((v - mean) ** 2 for v in values))
        assert row["n"] == "2"
        assert float(row["mean"]) == pytest.approx(mean)
        assert float(row["se"]) == pytest.approx(std / math.sqrt(2))
        assert float(row["std"]) == pytest.approx(std)
    # The figure draws them: one errorbar container per line, with y errors.
    runs = find_runs(built.directory.parent)
    finals = {run.name: final_values(run) for run in runs}
    points = field_points(runs, "test/acc", "optim.lr", finals)
    figure = final_figure(points)
    containers = [c for c in figure.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert len(containers) == 2 and all(c.has_yerr for c in containers)
    [bars] = containers[0].lines[2]
    heights = [segment[1][1] - segment[0][1] for segment in bars.get_segments()]
    assert heights == pytest.approx([2 * p[1].se for p in points.lines[0].points])


def test_a_single_run_uses_the_probes_own_standard_error():
    stat = aggregate([3.0], [0.25])
    assert (stat.mean, stat.se, stat.n) == (3.0, 0.25, 1)
    assert math.isnan(stat.std)
    assert aggregate([1.0, 3.0], [9.0, 9.0]).se == pytest.approx(1.0)  # seeds: the spread
    assert aggregate([float("nan")]) is None


def test_categorical_key_draws_grouped_points_not_lines(sweep, built):
    runs = find_runs(sweep)
    finals = {run.name: final_values(run) for run in runs}
    points = field_points(runs, "test/acc", "optim", finals)
    assert [line.label for line in points.lines] == ["optim.lr=0.01", "optim.lr=0.1"]
    figure = final_figure(points, [r.hyperparameters["optim"] for r in runs])
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["sam", "sgd"]
    xs = []
    for container in axes.containers:
        line = container.lines[0]
        assert line.get_linestyle() == "None"  # nothing joins sam and sgd
        xs.append(list(line.get_xdata()))
    assert xs[0][0] < 0 < xs[1][0] < 1 - 0.01  # offset side by side around category 0
    assert xs[0][1] == pytest.approx(1 - xs[1][0])
    # Numeric x keeps a line.
    numeric = final_figure(field_points(runs, "test/acc", "optim.lr", finals))
    assert numeric.axes[0].containers[0].lines[0].get_linestyle() == "-"
    assert main_key(runs, ["optim", "optim.lr"]) == "optim.lr"


def test_summary_page_content(built):
    page = (built.directory / "README.md").read_text()
    assert "8 runs: 8 completed." in page
    assert "Swept: `optim` (sam, sgd), `optim.lr` (0.01, 0.1) (x axis)." in page
    assert "Seeds: `seed` (averaged over)." in page
    assert "| optim | optim.lr | runs | status | test/acc |" in page
    assert "| sgd | 0.01 | 2 | 2 completed | 0.52 ± 0.01 |" in page
    assert page.count("| sgd |") + page.count("| sam |") == 4  # one row per configuration
    assert "Left out of the table and figures (estimator details): `hessian_trace/stderr`" in page
    assert "(the same in every run): `interpolation/train_loss_barrier_alpha`" in page
    assert "no records" not in page
    assert "![final_test.acc.png](final_test.acc.png)" in page
    assert "training_" not in page and "curves_" not in page  # on the details page
    details = (built.directory / "DETAILS.md").read_text()
    assert "![training_hessian_trace.trace.png]" in details
    assert "![curves_interpolation.png]" in details
    assert details.count("| completed |") == 8  # every run
    index = (built.directory / "index.html").read_text()
    assert "<table class='sortable'>" in index and "<script>" in index
    assert "data-sort='0.52" in index
    assert "href='details.html'" in index
    assert "http" not in index  # no external assets
    groups = read_csv(built.directory / "groups.csv")
    assert len(groups) == 4 and {g["runs"] for g in groups} == {"2"}


def test_a_sweep_over_probes_has_no_spurious_no_records_notes(tmp_path):
    sweep = tmp_path / "sweep"
    for num, probe in enumerate(("hessian_trace", "interpolation")):
        for lr in LRS:
            result = (
                HessianTraceResult(lr, 0.1, 8, "hutchpp", True)
                if probe == "hessian_trace"
                else interpolation("sgd", lr, 0)
            )
            meta = {"probe": probe, "step": 30, "when": "fit_end"}
            overrides = [f"probes=[{probe}]", f"optim.lr={lr}"]
            metrics = {"test/acc": acc("sgd", lr, 0)}
            write_job(
                sweep, 2 * num + LRS.index(lr), overrides, [probe], metrics, [(probe, meta, result)]
            )
    built = report(sweep)
    assert not any("no records" in note for note in built.notes), built.notes
    drawn = read_csv(built.directory / "figures.csv")
    trace = [r for r in drawn if r["field"] == "hessian_trace/trace"]
    assert {r["line"] for r in trace} == {""}  # `probes` does not vary among those runs
    # One run a point: the bar is the probe's own recorded standard error (`stderr`).
    assert [(r["n"], float(r["se"])) for r in trace] == [("1", 0.1), ("1", 0.1)]
    assert {r["se"] for r in drawn if r["field"] == "test/acc"} == {"nan"}
    # Without configs a missing probe is still a finding.
    for config in sweep.glob("*/config.yaml"):
        config.unlink()
    plain = tmp_path / "plain"
    for num, lr in enumerate(LRS):
        meta = {"probe": "hessian_trace", "step": 30, "when": "fit_end"}
        records = [("hessian_trace", meta, HessianTraceResult(lr, 0.1, 8, "hutchpp", True))]
        directory = write_job(plain, num, [f"optim.lr={lr}"], [], {}, records if num else [])
        (directory / "config.yaml").unlink()
    assert any("no records of probe hessian_trace" in n for n in report(plain).notes)


def test_cli_fields_x_and_open(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    main(
        [
            str(sweep),
            "--out",
            str(out),
            "--fields",
            "test/acc",
            "hessian_*/trace",
            "--x",
            "optim",
            "--open",
        ]
    )
    assert capsys.readouterr().out.strip() == str(out / "index.html")
    names = sorted(p.name for p in out.glob("final_*.png"))
    assert names == ["final_hessian_trace.trace.png", "final_test.acc.png"]
    page = (out / "README.md").read_text()
    assert "`optim` (sam, sgd) (x axis)" in page
    assert "(not chosen by --fields): `test/loss`" in page
    with pytest.raises(SystemExit) as info:
        main([str(sweep), "--out", str(out), "--x", "model.width"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--x: got 'model.width'" in err and "'optim.lr'" in err
    with pytest.raises(SystemExit):
        main([str(sweep), "--out", str(out), "--fields", "hessian/*"])
    assert "--fields: 'hessian/*' matches no field" in capsys.readouterr().err


def test_plane_curves_are_the_slices_through_the_centre():
    grid = [[3.0, 2.0, 3.5], [1.0, 0.5, 1.5], [4.0, 2.5, float("nan")]]  # loss[i][j] at (x_i, y_j)
    plane = PlaneResult(
        x=[-1.0, 0.0, 1.0], y=[-1.0, 0.0, 1.0], loss={"train": grid}, accuracy=None,
        directions="random", normalization="filter", center_loss={"train": 0.5},
        min_loss={"train": 0.5}, min_location={"train": [0.0, 0.0]}, direction_norms=[1.0, 1.0],
        direction_cosine=0.0, markers={}, trajectory=None, trajectory_steps=None,
        explained_variance=None, hessian_eigenvalues=None, bn_statistics="none",
        batching="vmap", num_samples={"train": 8},
    )  # fmt: skip
    record = read_record(make_record({"probe": "plane", "step": 3}, plane))
    curves = record_curves(record)
    assert curves.series["x/train"] == ([-1.0, 0.0, 1.0], [2.0, 0.5, 2.5])  # along d1 at y = 0
    assert curves.series["y/train"] == ([-1.0, 0.0, 1.0], [1.0, 0.5, 1.5])  # along d2 at x = 0
    grid[1][2] = float("inf")
    record = read_record(make_record({"probe": "plane", "step": 3}, plane))
    assert record_curves(record).series["y/train"][1] == [1.0, 0.5, None]
