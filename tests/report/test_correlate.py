"""lsuite-report --correlate on hand-made sweeps: Kendall and granulated tau, MLI, step counts."""

import csv
import itertools
import json
import math

import numpy as np
import pytest
import yaml
from scipy.stats import kendalltau

from lsuite.probes.hessian_trace import HessianTraceResult
from lsuite.probes.interpolation import InterpolationResult
from lsuite.report.cli import main
from lsuite.report.correlate import (
    granulated_tau,
    is_measure,
    kendall_tau,
    run_values,
    select_runs,
)
from lsuite.report.correlation_report import write_correlation, write_monotonicity
from lsuite.report.mli import largest_bump, monotonicity, monotonicity_rows
from lsuite.report.optimisation import (
    STEPS_FIRST_TO_SECOND,
    STEPS_TO_FIRST,
    optimisation_measures,
    steps_to_reach,
)
from lsuite.report.runs import find_runs
from lsuite.report.training_log import final_log_values, read_training_log
from lsuite.results.jsonl import append_record
from lsuite.results.records import make_record

HEADER = ["epoch", "lr-SGD", "step", "test/acc", "test/loss", "train/acc", "train/loss_epoch"]
HEADER += ["train/loss_step", "val/acc"]


def hand_tau(x, y):
    """Jiang et al.'s tau: the mean of sign products over ordered pairs i != j (no ties)."""
    n = len(x)
    total = sum(
        np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i in range(n) for j in range(n) if i != j
    )
    return total / (n * (n - 1))


def write_log(directory, losses, train_acc, steps_per_epoch=10):
    """Write csv/metrics.csv as Lightning's CSVLogger does: step rows, then epoch rows."""
    rows = []
    for epoch, loss in enumerate(losses):
        last = (epoch + 1) * steps_per_epoch - 1
        rows.append({"epoch": epoch, "step": last - 5, "train/loss_step": loss * 1.1})
        rows.append({"lr-SGD": 0.1, "step": last - 5})
        rows.append({"epoch": epoch, "step": last, "val/acc": 0.5})
        rows.append(
            {"epoch": epoch, "step": last, "train/acc": train_acc, "train/loss_epoch": loss}
        )
    rows.append({"epoch": len(losses), "step": len(losses) * steps_per_epoch, "test/acc": 0.1})
    path = directory / "csv" / "metrics.csv"
    path.parent.mkdir(parents=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER, restval="")
        writer.writeheader()
        writer.writerows(rows)


def interpolation(loss, start="init"):
    alpha = [i / (len(loss) - 1) for i in range(len(loss))]
    zeros = {"train": 0.0}
    return InterpolationResult(
        alpha=alpha,
        loss={"train": list(loss)},
        accuracy=None,
        loss_barrier=zeros,
        loss_barrier_alpha=zeros,
        error_barrier=None,
        error_barrier_alpha=None,
        monotonic={"train": False},
        max_rise=zeros,
        start=start,
        start_distance=1.0,
        bn_statistics="none",
        batching="loop",
        num_samples={"train": 8},
    )


def make_job(
    sweep, num, settings, *, test_acc, train_acc, losses, trace, curve, status="completed"
):
    """Write a job directory as lsuite-train -m leaves it, with a CSV log and probe records."""
    overrides = [f"{k}={v}" for k, v in settings.items()]
    directory = sweep / f"{num}_{','.join(overrides)}"
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    content = {"status": status, "job": {"num": num, "overrides": overrides}}
    if status == "completed":
        content["metrics"] = {"test/acc": test_acc, "test/loss": 1.0 - test_acc}
    (directory / "status.json").write_text(json.dumps(content))
    write_log(directory, losses, train_acc)
    meta = {"step": 100, "epoch": 9, "when": "fit_end", "weights": "current", "seconds": 0.1}
    meta |= {"world_size": 1, "source": "lsuite-train"}
    result = HessianTraceResult(trace, 0.1, 8, "hutchpp", converged=True)
    append_record(
        directory / "probes" / "hessian_trace.jsonl",
        make_record({**meta, "probe": "hessian_trace"}, result),
    )
    append_record(
        directory / "probes" / "interpolation.jsonl",
        make_record({**meta, "probe": "interpolation"}, interpolation(curve)),
    )
    return directory


LRS, WIDTHS = (0.01, 0.1), (32, 64, 128)
TEST_ACC = {(0.01, 32): 0.60, (0.01, 64): 0.70, (0.01, 128): 0.65}
TEST_ACC |= {(0.1, 32): 0.80, (0.1, 64): 0.75, (0.1, 128): 0.90}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A 2 x 3 sweep (optim.lr x model.width); gap = 1 - test/acc; trace = -test/acc."""
    root = tmp_path_factory.mktemp("multirun") / "sweep"
    for num, (lr, width) in enumerate(itertools.product(LRS, WIDTHS)):
        acc = TEST_ACC[(lr, width)]
        curve = [2.3, 1.0, 1.2, 0.1] if width == 128 else [2.3, 1.0, 0.5, 0.1]
        losses = [1.0, 0.2, 0.05, 0.005]
        make_job(root, num, {"optim.lr": lr, "model.width": width}, test_acc=acc,
                 train_acc=1.0, losses=losses, trace=-10 * acc + width, curve=curve)  # fmt: skip
    # Not converged (last mean training loss 0.5), and a failed job: both left out.
    make_job(root, 6, {"optim.lr": 1.0, "model.width": 32}, test_acc=0.1, train_acc=0.3,
             losses=[2.0, 0.5], trace=0.0, curve=[2.3, 2.0])  # fmt: skip
    make_job(root, 7, {"optim.lr": 1.0, "model.width": 64}, test_acc=0.1, train_acc=0.3,
             losses=[2.0], trace=0.0, curve=[2.3, 2.0], status="failed")  # fmt: skip
    return root


def test_kendall_tau_matches_scipy_and_hand():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=9), rng.normal(size=9)
    tau, n = kendall_tau(list(x), list(y))
    assert n == 9
    assert tau == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)
    assert tau == pytest.approx(hand_tau(x, y), abs=1e-12)
    # Pairs with a NaN are dropped; constant sides give NaN.
    tau, n = kendall_tau([1.0, 2.0, math.nan, 3.0], [1.0, 3.0, 0.0, 2.0])
    assert (tau, n) == (pytest.approx(1 / 3), 3)
    assert math.isnan(kendall_tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])[0])
    assert math.isnan(kendall_tau([1.0], [2.0])[0])


def test_infinite_flatness_ranks_as_the_largest_value():
    """1/alpha^2 with alpha = 0 is inf: kept, so its tau is minus that of alpha (a monotone map)."""
    alpha = [0.0, 0.1, 0.2, 0.0, 0.3, 0.05]
    flatness = [math.inf if a == 0 else 1 / a**2 for a in alpha]
    gap = [0.5, 0.2, 0.1, 0.4, 0.05, 0.3]
    tau_alpha, n_alpha = kendall_tau(alpha, gap)
    tau_flat, n_flat = kendall_tau(flatness, gap)
    assert n_alpha == n_flat == 6
    assert tau_flat == pytest.approx(-tau_alpha, abs=1e-12)
    assert tau_flat == pytest.approx(kendalltau(flatness, gap).statistic, abs=1e-12)
    settings = [{"k": i % 2, "j": i // 2} for i in range(6)]
    granulated = granulated_tau(flatness, gap, settings, ["k", "j"])
    assert granulated.runs == 6
    assert granulated.psi == pytest.approx(-granulated_tau(alpha, gap, settings, ["k", "j"]).psi)


def test_granulated_tau_by_hand():
    settings = [{"a": a, "b": b} for a, b in itertools.product((0, 1), (0, 1, 2))]
    x = [1.0, 2.0, 3.0, 6.0, 5.0, 4.0]
    y = [1.0, 3.0, 2.0, 4.0, 5.0, 6.0]
    result = granulated_tau(x, y, settings, ["a", "b"])
    # a varies alone in the groups b=0: (1,1)->(6,4), b=1: (2,3)->(5,5), b=2: (3,2)->(4,6):
    # every pair concordant, tau = 1 in each of the 3 groups.
    assert result.per_key["a"] == pytest.approx(1.0)
    # b varies alone in a=0: x (1,2,3), y (1,3,2) -> 1/3; a=1: x (6,5,4), y (4,5,6) -> -1.
    assert result.per_key["b"] == pytest.approx((1 / 3 - 1) / 2)
    assert result.groups == {"a": 3, "b": 2}
    assert result.psi == pytest.approx((1.0 + (1 / 3 - 1) / 2) / 2)
    assert result.runs == 6


def test_optimisation_measures_on_a_made_up_log(tmp_path):
    write_log(tmp_path, [1.0, 0.2, 0.05, 0.02, 0.005], train_acc=1.0)
    series = read_training_log(tmp_path)
    assert series["train/loss_epoch"][0] == (9, 1.0)
    final = final_log_values(series)
    assert final["train/loss"] == 0.005
    assert final["train/acc"] == 1.0
    measures = optimisation_measures(series)
    # Below 0.1 first at epoch 2 (logged at step 29: 30 steps), below 0.01 at epoch 4 (50 steps).
    assert measures == {STEPS_TO_FIRST: 30.0, STEPS_FIRST_TO_SECOND: 20.0}
    assert math.isnan(steps_to_reach([(9, 0.5), (19, 0.2)], 0.1))
    never = optimisation_measures({"train/loss_epoch": [(9, 0.5), (19, 0.05)]})
    assert never[STEPS_TO_FIRST] == 20.0
    assert math.isnan(never[STEPS_FIRST_TO_SECOND])
    assert all(math.isnan(v) for v in optimisation_measures({}).values())
    assert read_training_log(tmp_path / "missing") == {}


def test_measures_are_probe_fields_and_optimisation_measures():
    assert is_measure("generalization/pacbayes_flatness", "gap")
    assert is_measure("generalization/num_params", "gap")  # Jiang's "params" measure
    assert is_measure(STEPS_TO_FIRST, "gap")
    for name in ("generalization/num_samples", "hessian_trace/stderr", "hessian_trace/layer/a"):
        assert not is_measure(name, "gap")
    for name in ("test/acc", "train/loss", "gap", "loss_gap"):
        assert not is_measure(name, "gap")
    assert not is_measure("hessian_trace/trace", "hessian_trace/trace")


def test_run_values_and_convergence_filter(sweep):
    runs = find_runs(sweep)
    values = run_values(runs[0])
    assert values["gap"] == pytest.approx(1.0 - 0.60)
    assert values["loss_gap"] == pytest.approx((1.0 - 0.60) - 0.005)
    assert values["hessian_trace/trace"] == pytest.approx(-6.0 + 32)
    assert values[STEPS_TO_FIRST] == 30.0
    selection = select_runs(runs, "gap", "train/loss", 0.01)
    assert len(selection.used) == 6
    assert selection.left_out == {
        "train/loss >= 0.01": [runs[6].name],
        "status failed": [runs[7].name],
    }
    assert len(select_runs(runs, "gap", None, None).used) == 7
    assert len(select_runs(runs, "gap", "train/loss", 0.001).used) == 0
    assert select_runs(runs, "nothing", None, None).left_out["no nothing"] == [
        r.name for r in runs[:7]
    ]


def test_correlation_table_and_plot(sweep, tmp_path):
    written = write_correlation(find_runs(sweep), tmp_path, "gap")
    with (tmp_path / "correlation_gap.csv").open() as f:
        rows = {row["measure"]: row for row in csv.DictReader(f)}
    trace = rows["hessian_trace/trace"]
    x = [-10 * TEST_ACC[k] + k[1] for k in itertools.product(LRS, WIDTHS)]
    y = [1.0 - TEST_ACC[k] for k in itertools.product(LRS, WIDTHS)]
    assert float(trace["tau"]) == pytest.approx(kendalltau(x, y).statistic)
    assert trace["runs"] == "6"
    # With only the learning rate varied the trace is -10 * acc + width: tau 1 in every group.
    assert float(trace["tau_optim.lr"]) == pytest.approx(1.0)
    assert trace["groups_optim.lr"] == "3"
    expected = granulated_tau(x, y, [{"a": a, "b": b} for a, b in itertools.product(LRS, WIDTHS)],
                              ["a", "b"])  # fmt: skip
    assert float(trace["psi"]) == pytest.approx(expected.psi)
    assert float(trace["tau_model.width"]) == pytest.approx(expected.per_key["b"])
    # Equal in every run: not ranked, and said.
    assert "interpolation/start_distance" not in rows
    assert "interpolation/start_distance" in "\n".join(written.lines)
    text = "\n".join(written.lines)
    assert "6 of 8 runs used" in text
    assert "left out, train/loss >= 0.01: 1" in text
    assert "left out, status failed: 1" in text
    assert (tmp_path / "correlation_gap.md").read_text().count("| hessian_trace/trace |") == 1
    assert (tmp_path / "correlation_gap.png").stat().st_size > 1000


def test_largest_bump_and_monotonicity_on_made_up_curves(sweep):
    assert largest_bump([0, 0.5, 1], [2.0, 1.0, 0.5]) == 0.0
    assert largest_bump([0, 0.25, 0.5, 0.75, 1], [2.0, 1.0, 1.5, 0.8, 1.3]) == pytest.approx(0.5)
    assert largest_bump([-0.5, 0, 1, 1.5], [0.0, 2.0, 1.0, 3.0]) == 0.0  # outside [0, 1]
    assert math.isnan(largest_bump([0, 1], [1.0, math.nan]))
    runs = find_runs(sweep)
    found = monotonicity(runs)
    assert [m.run.name for m in found] == [r.name for r in runs[:7]]  # the failed job skipped
    assert [m.monotonic for m in found] == [True, True, False, True, True, False, True]
    # The bumps of 0.2 on a start loss of 2.3 are within a tolerance of 0.1 (0.23), not 0.05.
    assert monotonicity_rows(monotonicity(runs, tolerance=0.1))[0]["monotonic"] == 7
    assert monotonicity_rows(monotonicity(runs, tolerance=0.05))[0]["monotonic"] == 5
    rows = monotonicity_rows(found)
    by = {(r["key"], r["value"]): r for r in rows}
    assert by[("all", "")]["fraction"] == pytest.approx(5 / 7)
    assert by[("model.width", 128)]["fraction"] == 0.0
    assert by[("model.width", 128)]["mean_bump"] == pytest.approx(0.2)
    assert by[("model.width", 32)]["fraction"] == 1.0
    assert math.isnan(by[("model.width", 32)]["mean_bump"])
    assert by[("optim.lr", 1.0)]["runs"] == 1


def test_tolerance_counts_tiny_rises_as_monotonic(tmp_path):
    make_job(tmp_path, 0, {"optim.lr": 0.1}, test_acc=0.5, train_acc=1.0, losses=[0.005],
             trace=1.0, curve=[2.3, 1.0, 1.00001, 0.1])  # fmt: skip
    [strict] = monotonicity(find_runs(tmp_path), tolerance=0.0)
    [loose] = monotonicity(find_runs(tmp_path))
    assert not strict.monotonic
    assert loose.monotonic
    assert loose.bump == pytest.approx(1e-5)
    written = write_monotonicity(find_runs(tmp_path), tmp_path / "report")
    assert "1 of 1 runs" in written.lines[0]


def test_cli_correlate(sweep, capsys):
    main([str(sweep), "--correlate", "gap", "--out", str(sweep / "r")])
    printed = capsys.readouterr().out
    assert "correlation with gap: 6 of 8 runs used" in printed
    assert "| hessian_trace/trace |" in printed
    assert "monotonic linear interpolation" in printed
    assert (sweep / "r" / "correlation_gap.csv").exists()
    assert (sweep / "r" / "mli.csv").exists()
    # The summary page leads with the ranking (table, figure, what was left out), then MLI.
    page = (sweep / "r" / "README.md").read_text()
    headings = [line for line in page.splitlines() if line.startswith("## ")]
    assert headings[:3] == [
        "## Correlation with gap",
        "## Monotonic linear interpolation",
        "## Runs",
    ]
    ranking = page.split("## Correlation with gap", 1)[1].split("## Monotonic", 1)[0]
    assert "Correlation with gap: 6 of 8 runs used" in ranking
    assert "| measure | tau | runs | psi | psi_runs |" in ranking
    assert "| hessian_trace/trace |" in ranking
    assert "![correlation_gap.png](correlation_gap.png)" in ranking
    assert "- left out, train/loss >= 0.01: " in ranking
    html = (sweep / "r" / "index.html").read_text()
    assert "<h2>Correlation with gap</h2>" in html and "src='correlation_gap.png'" in html
    assert (sweep / "r" / "correlation_gap.png").is_file()  # not removed as a stale figure
    main([str(sweep), "--correlate", "test/acc", "--converged-below", "none", "--out",
          str(sweep / "r")])  # fmt: skip
    assert "correlation with test/acc: 7 of 8 runs used" in capsys.readouterr().out
    assert (sweep / "r" / "correlation_test_acc.csv").exists()
    with pytest.raises(SystemExit) as exit_info:
        main([str(sweep), "--correlate", "gapp", "--out", str(sweep / "r")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--correlate: got 'gapp', which no run has; expected one of " in error
    assert "gap, " in error and "hessian_trace/trace" in error
