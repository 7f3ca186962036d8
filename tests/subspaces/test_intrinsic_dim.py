"""d_int90 (relative and absolute) from a random-subspace sweep, and lsuite-report's option."""

import json

import pytest

from lsuite.errors import ConfigError
from lsuite.report.cli import main
from lsuite.report.intrinsic_dim import SUMMARY, from_runs, intrinsic_dimension
from lsuite.report.runs import Run


def test_thresholds_on_the_mean_curve():
    points = {10: [0.5, 0.6], 100: [0.85, 0.86], 1000: [0.9, 0.96], 30: [0.7]}
    result = intrinsic_dimension(points, baseline=0.95)
    assert result.dims == [10, 30, 100, 1000]
    assert result.means == pytest.approx([0.55, 0.7, 0.855, 0.93])
    assert result.relative == 100  # 0.855 >= 0.9 * 0.95 = 0.855
    assert result.absolute == 1000  # 0.93 >= 0.9
    assert intrinsic_dimension(points, baseline=None).relative is None
    assert intrinsic_dimension({10: [0.2]}, baseline=0.9).absolute is None
    with pytest.raises(ConfigError, match="fraction: got 0"):
        intrinsic_dimension(points, baseline=1.0, fraction=0)


def _run(tmp_path, name, overrides, acc, status="completed"):
    return Run(tmp_path / name, overrides, status, metrics={"test/acc": acc})


def test_from_runs_takes_the_baseline_from_runs_without_the_key(tmp_path):
    runs = [
        _run(tmp_path, "0", ["module=random_subspace", "module.dim=10"], 0.4),
        _run(tmp_path, "1", ["module=random_subspace", "module.dim=100"], 0.9),
        _run(tmp_path, "2", ["module.dim=100"], 0.1, status="failed"),
        _run(tmp_path, "3", ["optim=adam"], 0.96),
    ]
    result = from_runs(runs)
    assert result.dims == [10, 100] and result.baseline == 0.96
    assert result.relative == 100 and result.absolute == 100
    assert from_runs(runs, baseline=0.44).relative == 10  # 0.4 >= 0.9 * 0.44
    with pytest.raises(ConfigError, match=r"no completed run overrides model\.width"):
        from_runs(runs, key="model.width")


def _fake_sweep(root):
    for job, (dim, acc) in enumerate([(10, 0.3), (100, 0.8), (1000, 0.95)]):
        run = root / f"{job}_module.dim={dim}"
        run.mkdir(parents=True)
        status = {
            "status": "completed",
            "job": {"overrides": ["module=random_subspace", f"module.dim={dim}"]},
            "metrics": {"test/acc": acc},
        }
        (run / "status.json").write_text(json.dumps(status))
    return root


def test_lsuite_report_marks_d_int90(tmp_path, capsys):
    sweep = _fake_sweep(tmp_path / "sweep")
    main([str(sweep), "--intrinsic-dim", "--intrinsic-baseline", "0.97"])
    out = capsys.readouterr().out
    assert "d_int90 = 1000 (90% of the full model's 0.9700); d_int90 absolute = 1000" in out
    summary = json.loads((sweep / "report" / SUMMARY).read_text())
    assert summary["dims"] == [10, 100, 1000] and summary["relative"] == 1000
    assert (sweep / "report" / "intrinsic_dimension.png").stat().st_size > 1000
    with pytest.raises(SystemExit) as exit_info:
        main([str(sweep), "--intrinsic-dim", "--intrinsic-baseline", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
