"""measure_module: records, loggers, failures under warn/raise, in 1 process and in 2 (gloo)."""

import json
import logging
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
from failing_probe import FailingProbe
from timed_run import run_timed

from lsuite.errors import ConfigError
from lsuite.results import jsonl
from lsuite.session import Outputs, ProbeFailed, Sync, measure_module

WORKER = Path(__file__).with_name("ddp_worker.py")


class ListLogger:
    def __init__(self):
        self.calls = []

    def log_metrics(self, metrics, step):
        self.calls.append((dict(metrics), step))


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def batches(n=4):
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)
    ]


def measure(tmp_path, probe, logger, on_error="raise", step=3):
    return measure_module(
        probe,
        net(),
        {"train": batches()},
        loss_fn=torch.nn.functional.cross_entropy,
        meta={"probe": probe.name, "step": step, "epoch": 0, "when": "step", "world_size": 1},
        seed=0,
        outputs=Outputs(directory=tmp_path, loggers=[logger], plots=False),
        on_error=on_error,
    )


def test_success_writes_a_schema_2_record_and_logs_scalars(tmp_path):
    logger = ListLogger()
    result = measure(tmp_path, FailingProbe(fail_rank=-1, name="ok"), logger)
    [raw] = jsonl.read_records(tmp_path / "probes" / "ok.jsonl")
    assert raw["schema"] == 2
    assert raw["meta"]["kind"] == "FailingResult" and raw["meta"]["seconds"] >= 0
    assert raw["result"] == {"loss": result.loss}
    assert logger.calls == [({"probe/ok/loss": result.loss}, 3)]


def test_warn_writes_a_failure_record_and_one_warning(tmp_path, caplog):
    logger = ListLogger()
    with caplog.at_level(logging.WARNING, logger="lsuite"):
        assert measure(tmp_path, FailingProbe(name="bad"), logger, on_error="warn") is None
    [raw] = jsonl.read_records(tmp_path / "probes" / "bad.jsonl")
    assert raw["result"] is None
    assert raw["error"]["type"] == "RuntimeError"
    assert "planted probe failure" in raw["error"]["message"]
    assert "planted probe failure" in raw["error"]["traceback"]
    assert logger.calls == [({"probe/bad/failed": 1.0}, 3)]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "probe bad failed" in warnings[0].getMessage()


def test_raise_names_the_probe(tmp_path):
    with pytest.raises(ProbeFailed, match="probe bad failed: RuntimeError: planted"):
        measure(tmp_path, FailingProbe(name="bad"), ListLogger(), on_error="raise")
    assert not (tmp_path / "probes" / "bad.jsonl").exists()


def test_bad_on_error_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="on_error: got 'ignore'"):
        measure(tmp_path, FailingProbe(name="bad"), ListLogger(), on_error="ignore")


def test_one_process_sync_agrees_with_itself():
    assert Sync().agree_on_failure(True, torch.device("cpu")) is True
    assert Sync().agree_on_failure(False, torch.device("cpu")) is False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two(tmp_path, fail_rank, on_error):
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "MASTER_ADDR")}
    result = run_timed(
        [sys.executable, str(WORKER), str(tmp_path), str(free_port()), str(fail_rank), on_error],
        env=env,
        timeout=120,  # a hang fails the test
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [(tmp_path / f"rank{r}.txt").read_text().splitlines() for r in (0, 1)]


@pytest.mark.ddp
def test_two_processes_one_failing_rank_neither_hangs_nor_diverges(tmp_path):
    """Rank 1 raises after 2 of 5 reductions: both ranks agree, warn, and stay in step."""
    ranks = run_two(tmp_path / "warn", fail_rank=1, on_error="warn")
    assert ranks == [["none", "after=2"], ["none", "after=2"]]
    [raw] = jsonl.read_records(tmp_path / "warn" / "probes" / "failing.jsonl")
    assert raw["result"] is None and raw["meta"]["world_size"] == 2
    ranks = run_two(tmp_path / "raise", fail_rank=1, on_error="raise")
    for lines in ranks:
        assert lines[0].startswith("raised: probe failing failed") and lines[1] == "after=2"


@pytest.mark.ddp
def test_two_healthy_processes_equal_one(tmp_path):
    [[loss0, _], [loss1, _]] = run_two(tmp_path, fail_rank=-1, on_error="raise")
    single = measure(tmp_path / "one", FailingProbe(fail_rank=-1, name="failing"), ListLogger())
    assert loss0 == loss1
    assert float(loss0.removeprefix("loss=")) == pytest.approx(single.loss, rel=1e-6)
    [raw] = jsonl.read_records(tmp_path / "probes" / "failing.jsonl")
    assert json.dumps(raw["result"])
