"""check_command_line's messages for the mistakes a user makes most (in process; the command's
exit codes are tested through lsuite-train in tests/cli)."""

import pytest
import yaml

from lsuite.config.cli_check import check_command_line
from lsuite.config.paths import config_dir
from lsuite.errors import ConfigError


def error_of(args):
    with pytest.raises(ConfigError) as info:
        check_command_line(args, config_dir())
    return str(info.value)


def test_tilde_is_not_expanded_and_the_error_says_what_to_write():
    assert error_of(["data=mnist", "data.data_dir=~/datasets/mnist"]) == (
        "data.data_dir: got '~/datasets/mnist'; '~' is not expanded in overrides (Hydra's "
        "override grammar cannot parse it): write data.data_dir=$HOME/datasets/mnist "
        "(the shell expands $HOME) or an absolute path"
    )


def test_other_grammar_errors_name_the_override():
    assert error_of(["optim.lr=0.1", "model.width=(3"]).startswith("overrides: 'model.width=(3'")


def test_a_sweep_needs_multirun():
    message = error_of(["model.width=32,64", "optim.lr=0.1"])
    assert message.startswith("model.width: got 32,64, a sweep over 2 values, in a single run")
    assert "add -m" in message and "model.width=[32,64] for a list" in message
    check_command_line(["-m", "model.width=32,64"], config_dir())
    check_command_line(["hydra.mode=MULTIRUN", "model.width=32,64"], config_dir())
    # A config that is a sweep by itself needs no -m either.
    check_command_line(["experiment=curvature_sweep", "model.width=32,64"], config_dir())


def test_key_of_an_unselected_probe_says_how_to_select_it():
    message = error_of(["probes=sharpness", "probes.hessian_trace.every_n_epochs=5"])
    assert message == (
        "probes.hessian_trace.every_n_epochs: probe 'hessian_trace' is not selected "
        "(selected: sharpness); select it first: 'probes=[sharpness,hessian_trace]' "
        "probes.hessian_trace.every_n_epochs=..."
    )
    check_command_line(
        ["probes=[sharpness,hessian_trace]", "probes.hessian_trace.every_n_epochs=5"], config_dir()
    )


def test_key_of_an_unselected_callback_says_how_to_select_it():
    message = error_of(["callbacks.swa.swa_lrs=0.1"])
    assert "callbacks option 'swa' is not selected (selected: default)" in message
    assert "'callbacks=[default,swa]'" in message


def test_unknown_top_level_key_lists_the_top_level_keys():
    message = error_of(["seeed=1"])
    assert message.startswith("seeed: unknown key 'seeed'; expected one of ")
    assert "seed" in message and "hydra" not in message.split(";")[1].split("(")[0]


def test_the_eigenvalue_probe_has_one_name():
    assert "expected one of" in error_of(["probes=hessian_eigs"])
    check_command_line(["probes=hessian_eigenvalues"], config_dir())


def test_added_keys_keep_their_single_plus():
    check_command_line(["+trainer.detect_anomaly=false"], config_dir())
    # A group in the defaults list is chosen, not added (Hydra: "Multiple values for probes").
    assert error_of(["+probes=hessian_trace"]) == (
        "probes: got '+probes=hessian_trace'; probes is in the defaults already, so it cannot "
        "be added with +: write probes=hessian_trace"
    )


def test_every_experiment_with_sweeper_params_is_a_sweep_by_itself():
    """Without hydra.mode: MULTIRUN, `experiment=X` without -m would run one of its jobs."""
    found = 0
    for path in sorted((config_dir() / "experiment").glob("*.yaml")):
        hydra = (yaml.safe_load(path.read_text()) or {}).get("hydra") or {}
        if (hydra.get("sweeper") or {}).get("params"):
            found += 1
            assert hydra.get("mode") == "MULTIRUN", path.name
    assert found >= 2
