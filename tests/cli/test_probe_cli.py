"""lsuite-probe end to end: a finished run, --ckpt all, pairs, --weights, a sweep, errors, DDP."""

import csv
import json
import shutil
import sys

import pytest
import torch
from timed_run import command_env, run_timed

TRAIN = [
    "trainer.max_epochs=2",
    "trainer.enable_model_summary=false",
    "logger=none",
    "'probes=[hessian_trace,interpolation]'",
    "probes.hessian_trace.probe.num_matvecs=8",
    "probes.hessian_trace.every_n_epochs=null",
    "probes.interpolation.probe.num_points=5",
    "callbacks.model_checkpoint.save_top_k=-1",
    "callbacks.model_checkpoint.monitor=null",
    "data.batch_size=256",
]


def run_probe(args, cwd, timeout=300):
    return run_timed(
        [sys.executable, "-m", "lsuite.probe", "--no-progress", *map(str, args)],
        cwd=cwd,
        env=command_env(),
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe_cli")
    run_dir = root / "run"
    args = [a.strip("'") for a in TRAIN]
    result = run_timed(
        [sys.executable, "-m", "lsuite.train", *args, f"hydra.run.dir={run_dir}"],
        cwd=root,
        env=command_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def fresh_copy(run_dir, tmp_path, name="run"):
    """Copy a run without its probe records (config.yaml keeps pointing at the original)."""
    copy = tmp_path / name
    shutil.copytree(run_dir, copy)
    text = (copy / "config.yaml").read_text().replace(str(run_dir), str(copy))
    (copy / "config.yaml").write_text(text)
    return copy


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def meta(record):
    return record.get("meta", record)


def result(record):
    return record.get("result", record)


def assert_close(a, b, path=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)):
        assert abs(a - b) <= 1e-6 * max(1.0, abs(a)), (path, a, b)
    else:
        assert a == b, (path, a, b)


def test_run_equals_its_fit_end_records(trained, tmp_path):
    run = fresh_copy(trained, tmp_path)
    out = run_probe([run], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("hessian_trace", "interpolation"):
        recs = records(run / "probes" / f"{name}.jsonl")
        fit_end = [r for r in recs if meta(r)["when"] == "fit_end"]
        probed = [r for r in recs if meta(r).get("source") == "lsuite-probe"]
        assert len(fit_end) == 1 and len(probed) == 1, name
        assert meta(probed[0])["when"] == "checkpoint"
        assert meta(probed[0])["checkpoint"].endswith("last.ckpt")
        assert meta(probed[0])["step"] == meta(fit_end[0])["step"]
        assert_close(result(probed[0]), result(fit_end[0]), name)


def test_ckpt_all_one_record_per_checkpoint_in_step_order(trained, tmp_path):
    run = fresh_copy(trained, tmp_path)
    out = run_probe([run, "--ckpt", "all", "probes=[hessian_trace]"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    probed = [
        meta(r)
        for r in records(run / "probes" / "hessian_trace.jsonl")
        if meta(r).get("source") == "lsuite-probe"
    ]
    files = sorted((run / "checkpoints").glob("*.ckpt"))
    assert len(probed) == len(files) == 3
    steps = [m["step"] for m in probed]
    assert steps == sorted(steps) and steps[0] < steps[-1]
    assert probed[-1]["checkpoint"].endswith("last.ckpt")


def test_pairs_matrix_symmetric_zero_diagonal_equal_to_interpolation(trained, tmp_path):
    from lsuite.callbacks.probe_batches import sample_batches
    from lsuite.config.build import build_datamodule, build_module
    from lsuite.config.run_dir import load_run_config
    from lsuite.probes.interpolation import Interpolation

    run = fresh_copy(trained, tmp_path)
    names = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    args = [run, "--pairs", "--ckpt", *names, "probes=[interpolation]"]
    out = run_probe([*args, "probes.interpolation.probe.num_points=5"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (run / "pairs_barriers.png").is_file()
    rows = list(csv.reader((run / "pairs_val_loss_barrier.csv").read_text().splitlines()))
    labels = rows[0][1:]
    matrix = [[float(v) for v in row[1:]] for row in rows[1:]]
    assert labels == [n.removesuffix(".ckpt") for n in names]
    assert (run / "pairs_train_error_barrier.csv").is_file()

    cfg = load_run_config(run)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    modules = []
    for name in names:
        module = build_module(cfg, datamodule)
        module.load_state_dict(torch.load(run / "checkpoints" / name)["state_dict"])
        modules.append(module)
    batches = {
        split: sample_batches(loader, num_batches=2, batch_size=None, seed=0)
        for split, loader in (
            ("train", datamodule.train_dataloader()),
            ("val", datamodule.val_dataloader()),
        )
    }
    probe = Interpolation(num_points=5)
    for i in range(3):
        assert matrix[i][i] == 0.0
        for j in range(3):
            assert matrix[i][j] == matrix[j][i]
            if i < j:
                expected = probe.measure(
                    modules[j], batches["train"], val_batches=batches["val"], start=modules[i]
                )
                assert abs(matrix[i][j] - expected.loss_barrier["val"]) <= 1e-6


def test_weights_plain_state_dict_and_wrong_architecture(trained, tmp_path):
    state = torch.load(trained / "checkpoints" / "last.ckpt")["state_dict"]
    plain = tmp_path / "net.pt"
    torch.save({k.removeprefix("net."): v for k, v in state.items()}, plain)
    common = ["model=mlp", "data=digits", "probes=[hessian_trace]"]
    quick = "probes.hessian_trace.probe.num_matvecs=8"
    ok = run_probe(["--weights", plain, *common, quick, "--out", tmp_path / "m"], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-3000:]
    recs = records(tmp_path / "m" / "probes" / "hessian_trace.jsonl")
    assert meta(recs[0])["source"] == "lsuite-probe"
    assert meta(recs[0])["checkpoint"] == str(plain.resolve())

    bad = run_probe(["--weights", plain, *common, "model.width=64", quick], cwd=tmp_path)
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1, bad.stderr
    assert lines[0].startswith("lsuite-probe: error: --weights:")
    assert "'hidden.0.weight'" in lines[0] and "(128, 64)" in lines[0] and "(64, 64)" in lines[0]
    assert str(plain) in lines[0]


@pytest.mark.parametrize(
    ("make_args", "match"),
    [
        (lambda run, tmp: [tmp / "missing"], "no such directory"),
        (lambda run, tmp: [tmp], "expected a run directory"),
        (lambda run, tmp: [run, "--ckpt", "lastt"], "--ckpt: got 'lastt'"),
        (lambda run, tmp: [run, "--ckpt", "nothere.ckpt"], "--ckpt: got 'nothere.ckpt'"),
        (lambda run, tmp: [run, "trainer.nope=1"], "unknown key 'nope'"),
        (lambda run, tmp: [run, "probes=[nope]"], "probes: got 'nope'"),
        (lambda run, tmp: [run, "model=cnn"], "cannot be swapped"),
        (lambda run, tmp: [run.parent, "probes=[nope]"], "probes: got 'nope'"),
    ],
    ids=[
        "missing-dir",
        "not-a-run",
        "unknown-choice",
        "missing-file",
        "bad-key",
        "bad-probe",
        "group",
        "sweep-bad-probe",
    ],
)
def test_errors_are_one_line_exit_2(trained, tmp_path, make_args, match):
    out = run_probe(make_args(trained, tmp_path), cwd=tmp_path, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and lines[0].startswith("lsuite-probe: error: "), out.stderr
    assert match in lines[0]


def test_no_checkpoints_is_an_error(trained, tmp_path):
    run = fresh_copy(trained, tmp_path)
    shutil.rmtree(run / "checkpoints")
    out = run_probe([run], cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "no last.ckpt" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_sweep_measures_every_run_and_records_a_broken_one(trained, tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    good = fresh_copy(trained, sweep, "0")
    broken = fresh_copy(trained, sweep, "1")
    (broken / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    other = fresh_copy(trained, sweep, "2")
    out = run_probe([sweep, "probes=[hessian_trace]"], cwd=tmp_path)
    assert out.returncode == 1, out.stderr[-3000:]
    summary = json.loads((sweep / "probe_summary.json").read_text())
    assert [e["run"] for e in summary] == ["0", "1", "2"]
    assert [e["status"] for e in summary] == ["ok", "error", "ok"]
    assert "last.ckpt" in summary[1]["error"]
    for run in (good, other):
        probed = [
            r
            for r in records(run / "probes" / "hessian_trace.jsonl")
            if meta(r).get("source") == "lsuite-probe"
        ]
        assert len(probed) == 1
    assert "1" in out.stdout and "error" in out.stdout
    report = run_timed(
        [sys.executable, "-m", "lsuite.report.cli", str(sweep)],
        env=command_env(),
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]


@pytest.mark.ddp
def test_two_processes_equal_one(trained, tmp_path):
    one = fresh_copy(trained, tmp_path, "one")
    two = fresh_copy(trained, tmp_path, "two")
    args = ["probes=[hessian_trace,interpolation]", "probes.hessian_trace.num_batches=4"]
    assert run_probe([one, *args], cwd=tmp_path).returncode == 0
    out = run_probe([two, *args, "trainer.devices=2", "trainer.accelerator=cpu"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("hessian_trace", "interpolation"):
        a = [r for r in records(one / "probes" / f"{name}.jsonl") if meta(r).get("source")]
        b = [r for r in records(two / "probes" / f"{name}.jsonl") if meta(r).get("source")]
        a = [r for r in a if meta(r)["source"] == "lsuite-probe"]
        b = [r for r in b if meta(r)["source"] == "lsuite-probe"]
        assert len(a) == len(b) == 1
        assert meta(b[0])["world_size"] == 2
        assert_close(result(a[0]), result(b[0]), name)
