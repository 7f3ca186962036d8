"""Check command-line overrides before Hydra runs, so mistakes give one clear line."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lsuite.config.validate import validate
from lsuite.errors import ConfigError

_PASS_THROUGH = {
    "-h", "--help", "--hydra-help", "--info", "-i", "-c", "--cfg", "-p", "--package",
    "--resolve", "-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir",
    "-sc", "--shell-completion", "--experimental-rerun",
}  # fmt: skip


def check_command_line(args: list[str], config_dir: Path, config_name: str = "train") -> None:
    """Check group choices, keys and values of the overrides in ``args``.

    Every value of a sweep (``-m key=a,b``) is checked. Hydra's own flags (``--help``,
    ``--cfg``...) skip the check and are left to Hydra.

    Args:
        args: the command-line arguments after the program name.
        config_dir: directory of the primary config.
        config_name: name of the primary config.

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    if any(arg.split("=")[0] in _PASS_THROUGH for arg in args):
        return
    texts = [arg for arg in args if not arg.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(texts)
    except HydraException as error:
        raise ConfigError(f"overrides: {_first_line(error)}") from error
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            for override in overrides:
                _check_group_choice(loader, override)
            _check_values(overrides, config_name)
    finally:
        GlobalHydra.instance().clear()


def _check_group_choice(loader: object, override: Override) -> None:
    group = override.key_or_group
    if group.startswith("hydra") or override.is_delete() or override.package:
        return
    options = loader.get_group_options(group)  # type: ignore[attr-defined]
    if not options:
        return
    for value in _values(override):
        for choice in value if isinstance(value, list) else [value]:
            if choice is not None and str(choice) not in options:
                raise ConfigError(f"{group}: got {choice!r}; expected one of {', '.join(options)}")


def _check_values(overrides: list[Override], config_name: str) -> None:
    """Compose once per value of every sweep (the others at their first value) and validate."""
    firsts = [_as_text(o, _values(o)[0]) for o in overrides]
    combos = [firsts]
    for i, override in enumerate(overrides):
        for value in _values(override)[1:]:
            combos.append([*firsts[:i], _as_text(override, value), *firsts[i + 1 :]])
    for combo in combos:
        cfg = _compose(config_name, combo)
        validate(cfg)


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    try:
        return compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(_explain(error, config_name, overrides)) from error


def _explain(error: Exception, config_name: str, overrides: list[str]) -> str:
    text = _first_line(error)
    for override in overrides:
        key = override.split("=")[0].lstrip("+~")
        if f"'{key}'" in str(error) and "Could not override" in str(error):
            parent, _, leaf = key.rpartition(".")
            others = [o for o in overrides if o != override]
            base = compose(config_name, overrides=others)
            node = OmegaConf.select(base, parent) if parent else base
            known = ", ".join(sorted(str(k) for k in node)) if isinstance(node, DictConfig) else ""
            return (
                f"{key}: unknown key {leaf!r}; expected one of {known} "
                f"(prefix with + to add a new key: +{override})"
            )
    return f"overrides: {text}"


def _values(override: Override) -> list[object]:
    if override.is_sweep_override():
        return list(override.sweep_iterator())
    return [override.value()]


def _as_text(override: Override, value: object) -> str:
    prefix = "+" if override.is_add() else "++" if override.is_force_add() else ""
    if override.is_delete():
        return override.input_line or ""
    rendered = Override._get_value_element_as_str(value)  # same quoting rules as Hydra's own
    return f"{prefix}{override.get_key_element()}={rendered}"


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


__all__ = ["check_command_line"]
