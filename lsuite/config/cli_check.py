"""Check command-line overrides before Hydra runs, so mistakes give one clear line."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from hydra.types import RunMode
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

    Every value of a sweep (``-m key=a,b``) is checked; a sweep without ``-m`` in a config that
    is not a multirun is an error (Hydra's "Ambiguous value"). ``~`` in a value (which Hydra's
    grammar cannot parse), a key of a group option that is not selected, and ``+group=x`` for
    a group already in the defaults each get a message saying what to write instead. Hydra's
    own flags (``--help``, ``--cfg``...) skip the check and are left to Hydra.

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
    overrides = _parse(texts)
    multirun = any(arg in ("-m", "--multirun") for arg in args)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            for override in overrides:
                _check_group_choice(loader, override)
            _check_single_run_sweeps(overrides, config_name, multirun)
            _check_values(loader, overrides, config_name)
    finally:
        GlobalHydra.instance().clear()


def _parse(texts: list[str]) -> list[Override]:
    """Parse the overrides one by one, so a grammar error names the one that failed."""
    parser = OverridesParser.create()
    overrides = []
    for text in texts:
        try:
            overrides.extend(parser.parse_overrides([text]))
        except HydraException as error:
            raise ConfigError(_explain_grammar(text, error)) from error
    return overrides


def _explain_grammar(text: str, error: HydraException) -> str:
    """Say why an override does not parse; ``~`` in a value is the usual reason."""
    key, _, value = text.partition("=")
    if "~" in value:
        home = f"$HOME{value[1:]}" if value.startswith("~") else value.replace("~", "$HOME")
        return (
            f"{key.lstrip('+')}: got {value!r}; '~' is not expanded in overrides (Hydra's override "
            f"grammar cannot parse it): write {key}={home} (the shell expands $HOME) "
            "or an absolute path"
        )
    return f"overrides: {text!r} does not parse: {_first_line(error)}"


def _check_single_run_sweeps(overrides: list[Override], config_name: str, multirun: bool) -> None:
    """A sweep (``key=a,b``) needs ``-m``, unless the config itself is a multirun."""
    sweeps = [o for o in overrides if o.is_sweep_override() and not o.is_hydra_override()]
    if multirun or not sweeps:
        return
    plain = [o.input_line or "" for o in overrides if not o.is_sweep_override()]
    try:
        mode = compose(config_name, overrides=plain, return_hydra_config=True).hydra.mode
    except (HydraException, OmegaConfBaseException):
        mode = None  # the value checks below report the composition error
    if mode == RunMode.MULTIRUN:
        return
    first = sweeps[0]
    key = first.get_key_element().lstrip("+~")
    value = (first.input_line or "").partition("=")[2]
    raise ConfigError(
        f"{key}: got {value}, a sweep over {len(list(first.sweep_iterator()))} values, "
        f"in a single run; add -m to sweep over them, or write {key}=[{value}] for a list"
    )


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


def _check_values(loader: object, overrides: list[Override], config_name: str) -> None:
    """Compose once per value of every sweep (the others at their first value) and validate."""
    firsts = [_as_text(o, _values(o)[0]) for o in overrides]
    combos = [firsts]
    for i, override in enumerate(overrides):
        for value in _values(override)[1:]:
            combos.append([*firsts[:i], _as_text(override, value), *firsts[i + 1 :]])
    for combo in combos:
        cfg = _compose(loader, config_name, combo)
        validate(cfg)


def _compose(loader: object, config_name: str, overrides: list[str]) -> DictConfig:
    try:
        return compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(_explain(loader, error, config_name, overrides)) from error


def _explain(loader: object, error: Exception, config_name: str, overrides: list[str]) -> str:
    text = _first_line(error)
    for override in overrides:
        key = override.split("=")[0].lstrip("+~")
        if override.startswith("+") and text.startswith(f"Multiple values for {key}."):
            value = override.partition("=")[2]
            return (
                f"{key}: got {override!r}; {key} is in the defaults already, so it cannot be "
                f"added with +: write {key}={value}"
            )
        if f"'{key}'" in str(error) and "Could not override" in str(error):
            parent, _, leaf = key.rpartition(".")
            others = [o for o in overrides if o != override]
            base = compose(config_name, overrides=others, return_hydra_config=True)
            unselected = _unselected_option(loader, base, key)
            if unselected:
                return unselected
            node = OmegaConf.select(base, parent) if parent else base
            if node is base:
                node = [k for k in base if k != "hydra"]  # keys only: values may need Hydra
            known = (
                ", ".join(sorted(str(k) for k in node))
                if isinstance(node, (DictConfig, list))
                else ""
            )
            return (
                f"{key}: unknown key {leaf!r}; expected one of {known} "
                f"(prefix with + to add a new key: +{override})"
            )
    return f"overrides: {text}"


def _unselected_option(loader: object, base: DictConfig, key: str) -> str | None:
    """Explain a key of a group option that is not selected (``probes.hessian_trace.x=1``).

    Returns:
        The message, or None when ``key`` is not under an option of a config group.
    """
    parts = key.split(".")
    for i in range(1, len(parts)):
        group, option = "/".join(parts[:i]), parts[i]
        options = loader.get_group_options(group)  # type: ignore[attr-defined]
        if option not in options:
            continue
        node = OmegaConf.select(base, ".".join(parts[:i]))
        if isinstance(node, DictConfig) and option in node:
            return None
        choice = base.hydra.runtime.choices.get(group)
        if isinstance(choice, str):
            selected = [choice]
        else:
            selected = (
                [str(k) for k in node if str(k) in options] if isinstance(node, DictConfig) else []
            )
        what = "probe" if group == "probes" else f"{group} option"
        return (
            f"{key}: {what} {option!r} is not selected "
            f"(selected: {', '.join(selected) or 'none'}); select it first: "
            f"'{group}=[{','.join([*selected, option])}]' {key}=..."
        )
    return None


def _values(override: Override) -> list[object]:
    if override.is_sweep_override():
        return list(override.sweep_iterator())
    return [override.value()]


def _as_text(override: Override, value: object) -> str:
    if override.is_delete():
        return override.input_line or ""
    rendered = Override._get_value_element_as_str(value)  # same quoting rules as Hydra's own
    return f"{override.get_key_element()}={rendered}"  # the key element keeps its + or ++


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


__all__ = ["check_command_line"]
