"""The SLURM preset makes requeued jobs continue: LSUITE_RESUME=auto, the default of ``resume``."""

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lsuite.config.paths import config_dir


def compose_train(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_slurm_preset_sets_resume_auto_for_its_jobs():
    cfg = compose_train(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    assert cfg.hydra.job.env_set.LSUITE_RESUME == "auto"
    assert cfg.hydra.launcher.partition == "gpu"
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert "LSUITE_RESUME" not in compose_train([]).hydra.job.env_set


def test_resume_defaults_to_the_environment_and_the_command_line_wins(monkeypatch):
    monkeypatch.delenv("LSUITE_RESUME", raising=False)
    assert compose_train([]).resume is None
    monkeypatch.setenv("LSUITE_RESUME", "auto")
    assert compose_train([]).resume == "auto"
    assert compose_train(["resume=null"]).resume is None
