"""A Hydra callback that builds the ``lsuite-report`` of a sweep (or run) when it ends."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lsuite.errors import ConfigError

log = logging.getLogger("lsuite")


class BuildReport(Callback):
    """Build the report into ``<sweep dir>/report`` (a single run: ``<run dir>/report``).

    Enabled by the top-level key ``report`` (``lsuite-train -m ... report=true``); registered
    in ``conf/hydra/default.yaml`` under ``hydra.callbacks``. Hydra calls ``on_multirun_end``
    in the launching process after every job returned (local, joblib and submitit launchers).
    A report that cannot be built is a warning: the runs are done and stay.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check ``report`` before training."""
        _enabled(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check ``report`` before the first job."""
        _enabled(config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Report the run directory (``hydra.runtime.output_dir``) of a single run."""
        if _enabled(config) and _rank_zero():
            _build(Path(str(config.hydra.runtime.output_dir)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Report the sweep directory (``hydra.sweep.dir``)."""
        if _enabled(config) and _rank_zero():
            _build(Path(str(config.hydra.sweep.dir)))


def _enabled(config: DictConfig) -> bool:
    """Return ``config.report`` (missing: False).

    Raises:
        ConfigError: when it is not a boolean.
    """
    value = config.get("report", False)
    if not isinstance(value, bool):
        raise ConfigError(f"report: got {value!r}; expected true or false")
    return value


def _rank_zero() -> bool:
    """Whether this is not a process Lightning started for another DDP rank."""
    # Under trainer=ddp_cpu Lightning reruns the command (a whole sweep included) for ranks 1
    # and up with LOCAL_RANK set; only rank zero's process builds the report.
    return all(os.environ.get(name, "0") in ("", "0") for name in ("LOCAL_RANK", "RANK"))


def _build(directory: Path) -> None:
    from lsuite.report.build import report  # matplotlib only when a report is asked for

    try:
        built = report(directory)
    except Exception as error:  # the runs are done: say why and go on
        log.warning("lsuite: report=true: no report of %s: %s", directory, error)
        return
    log.info("lsuite: report of %d runs: %s", len(built.runs), built.index)
