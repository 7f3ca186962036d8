"""Rebuild a run's config from its ``config.yaml``, with probes chosen as in lsuite-train."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lsuite.errors import ConfigError


def is_run_dir(path: Path) -> bool:
    """Return True when ``path`` holds a run's ``config.yaml`` (written by lsuite-train)."""
    return (path / "config.yaml").is_file()


def sweep_runs(path: Path) -> list[Path]:
    """Return the run directories of a sweep: the outermost subdirectories with a ``config.yaml``.

    Args:
        path: the sweep directory.

    Returns:
        The run directories, sorted by path (numerically where names are numbers).
    """
    found = {p.parent for p in path.rglob("config.yaml") if p.parent != path}
    found = {p for p in found if p.name != ".hydra"}
    # a run's own subdirectories (wandb's files/config.yaml) are not runs
    found = {p for p in found if not any(a in found for a in p.parents)}
    return sorted(found, key=lambda p: [_natural(part) for part in p.relative_to(path).parts])


def _natural(part: str) -> tuple[int, int | str]:
    return (0, int(part)) if part.isdigit() else (1, part)


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split command-line overrides into those of the ``probes`` group and the rest.

    Args:
        overrides: ``key=value`` strings (``+``/``++``/``~`` prefixes allowed).

    Returns:
        ``(probe_overrides, other_overrides)`` in their given order.
    """
    probes, others = [], []
    for text in overrides:
        key = text.split("=", 1)[0].lstrip("+~")
        (probes if key == "probes" or key.startswith("probes.") else others).append(text)
    return probes, others


def compose_train(overrides: Sequence[str]) -> DictConfig:
    """Compose ``conf/train.yaml`` with ``overrides`` through Hydra's compose API.

    The overrides are first checked as lsuite-train checks them (group choices, keys, values).
    Hydra-only values (``run_dir``, ``run_name``, ``overrides``) are left unresolved.

    Args:
        overrides: Hydra overrides, e.g. ``["probes=[hessian_trace]", "model=cnn"]``.

    Returns:
        The composed config.

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from lsuite.config.cli_check import check_command_line
    from lsuite.config.paths import config_dir

    check_command_line(list(overrides), config_dir())
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            return compose("train", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"overrides: {str(error).splitlines()[0]}") from error
    finally:
        GlobalHydra.instance().clear()


def load_run_config(run_dir: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Return the config a run was trained with, its probes and keys changed by ``overrides``.

    ``probes=[a,b]`` (with or without ``probes.a.*`` keys) composes the probes afresh from
    ``conf/probes/`` exactly as lsuite-train would; ``probes.a.key=value`` alone changes the run's
    own probe settings. Every other override (``trainer.devices=2``, ``data.batch_size=64``)
    changes an existing key of the run's config.

    Args:
        run_dir: the run directory (holding ``config.yaml``).
        overrides: command-line overrides.

    Returns:
        The resolved config, with ``run_dir`` set to ``run_dir``.

    Raises:
        ConfigError: for a missing ``config.yaml``, an unknown key, or a bad probe override.
    """
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(
            f"RUN_DIR: got {str(run_dir)!r}; expected a run directory holding config.yaml "
            "(written by lsuite-train) or a sweep directory of such runs"
        )
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"RUN_DIR: {str(path)!r} is not a mapping")
    probe_overrides, others = split_overrides(overrides)
    if any(o.split("=", 1)[0].lstrip("+~") == "probes" for o in probe_overrides):
        composed = compose_train(probe_overrides)
        cfg.probes = composed.probes
    else:
        apply_overrides(cfg, probe_overrides)
    apply_overrides(cfg, others)
    cfg.run_dir = str(run_dir)
    try:
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException as error:
        raise ConfigError(f"overrides: {str(error).splitlines()[0]}") from error
    assert isinstance(resolved, DictConfig)
    return resolved


def check_overrides(overrides: Sequence[str]) -> None:
    """Check the overrides that do not depend on a run: their syntax and any ``probes=`` choice.

    A sweep checks these once, before measuring any run.

    Args:
        overrides: command-line overrides.

    Raises:
        ConfigError: for a malformed override or a bad probe choice or key.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as error:
        raise ConfigError(f"overrides: {str(error).splitlines()[0]}") from error
    probe_overrides, _ = split_overrides(overrides)
    if any(o.split("=", 1)[0].lstrip("+~") == "probes" for o in probe_overrides):
        compose_train(probe_overrides)


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Set existing keys of ``cfg`` (``key=value``; ``+key=value`` adds a key), in place.

    Values are parsed by Hydra's override grammar (``[1,2]``, ``null``, quoted strings).

    Args:
        cfg: the config to change.
        overrides: the overrides.

    Raises:
        ConfigError: for a malformed override, a group choice, or an unknown key.
    """
    if not overrides:
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as error:
        raise ConfigError(f"overrides: {str(error).splitlines()[0]}") from error
    for override in parsed:
        key = override.key_or_group
        if override.is_sweep_override():
            raise ConfigError(f"{key}: got a sweep ({override.input_line}); expected one value")
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not isinstance(node, DictConfig):
            raise ConfigError(
                f"{key}: unknown key; {parent!r} is not a mapping in the run's config"
            )
        if override.is_delete():
            node.pop(leaf, None)
            continue
        if leaf not in node and not (override.is_add() or override.is_force_add()):
            known = ", ".join(sorted(str(k) for k in node))
            raise ConfigError(
                f"{key}: unknown key {leaf!r}; expected one of {known} "
                f"(prefix with + to add a new key: +{override.input_line})"
            )
        if isinstance(node.get(leaf), DictConfig) and "_target_" in node[leaf]:
            raise ConfigError(
                f"{key}: got {override.value()!r}; a run's {key} cannot be swapped for another "
                "config group choice (use --weights FILE with model=... data=...)"
            )
        OmegaConf.update(cfg, key, override.value(), force_add=True)


__all__ = [
    "apply_overrides",
    "check_overrides",
    "compose_train",
    "is_run_dir",
    "load_run_config",
    "split_overrides",
]
