"""Find probe result classes by name and rebuild typed results from their JSON dicts."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import pkgutil
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from lsuite.errors import ConfigError

if TYPE_CHECKING:
    from lsuite.probes.base import ProbeResult

log = logging.getLogger(__name__)

T = TypeVar("T")

_CLASSES: dict[str, type[ProbeResult]] = {}
"""Result classes by class name (a record's ``meta["kind"]``), filled by `register`."""


def register(cls: type[ProbeResult]) -> None:
    """Make ``cls`` findable by its class name; a later class of the same name replaces it.

    Args:
        cls: a `ProbeResult` subclass (called from ``ProbeResult.__init_subclass__``).
    """
    previous = _CLASSES.get(cls.__name__)
    if previous is not None and previous is not cls:
        log.debug("result class %s of %s replaces %s", cls.__name__, cls.__module__, previous)
    _CLASSES[cls.__name__] = cls


def result_class(kind: str) -> type[ProbeResult]:
    """Return the result class named ``kind`` (e.g. ``"HessianTraceResult"``).

    Every module of ``lsuite.probes`` is imported on the first miss, so the classes of probes
    not imported yet are found too.

    Args:
        kind: the class name, as in a record's ``meta["kind"]``.

    Returns:
        The `ProbeResult` subclass.

    Raises:
        ConfigError: when no result class has that name; the message lists the known ones.
    """
    if kind not in _CLASSES:
        _import_probe_modules()
    try:
        return _CLASSES[kind]
    except KeyError:
        known = ", ".join(sorted(_CLASSES))
        raise ConfigError(f"kind: got {kind!r}; expected a result class, one of {known}") from None


def known_kinds() -> list[str]:
    """Return the names of every result class of ``lsuite.probes`` (and any other registered)."""
    _import_probe_modules()
    return sorted(_CLASSES)


def decode(cls: type[T], data: Mapping[str, Any]) -> T:
    """Rebuild a result dataclass from ``to_dict()`` output, converting values by field type.

    ``float`` fields turn the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (how records write
    non-finite numbers) back into floats; lists, tuples, dicts and ``X | None`` are followed
    into; ``Tensor`` and ``np.ndarray`` fields come back from nested lists (float64 or int64:
    JSON keeps values, not dtypes); nested dataclasses are rebuilt the same way. Fields that
    ``to_dict`` leaves out (``metadata={"json": False}``) and other missing fields with
    defaults take their defaults; keys that are not fields are ignored.

    Args:
        cls: the dataclass to build.
        data: its fields as JSON values.

    Returns:
        The instance.

    Raises:
        ConfigError: when ``data`` is not a mapping or lacks a field without a default.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{cls.__name__}: got {type(data).__name__}; expected a dict of fields")
    hints = _field_types(cls)
    values: dict[str, Any] = {}
    missing = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not field.init:
            continue
        if field.name not in data or not field.metadata.get("json", True):
            no_default = field.default is dataclasses.MISSING
            if no_default and field.default_factory is dataclasses.MISSING:
                missing.append(field.name)
            continue
        values[field.name] = _convert(data[field.name], hints.get(field.name, Any))
    if missing:
        raise ConfigError(
            f"{cls.__name__}: got fields {sorted(data)}; missing {', '.join(missing)}"
        )
    return cls(**values)


def _import_probe_modules() -> None:
    import lsuite.probes

    for module in pkgutil.iter_modules(lsuite.probes.__path__, "lsuite.probes."):
        if module.name in sys.modules:
            continue
        try:
            importlib.import_module(module.name)
        except ImportError as error:  # an optional dependency of one probe
            log.debug("cannot import %s: %s", module.name, error)


def _field_types(cls: type) -> dict[str, Any]:
    """Return each field's type, evaluated where the class was defined (Any where it fails)."""
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError, AttributeError):
        namespace = vars(sys.modules.get(cls.__module__, typing))
        out: dict[str, Any] = {}
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            try:
                hint = field.type
                out[field.name] = eval(hint, dict(namespace)) if isinstance(hint, str) else hint
            except Exception:  # an annotation that cannot be evaluated here
                out[field.name] = Any
        return out


def _convert(value: Any, hint: Any) -> Any:
    """Return the JSON ``value`` as the type ``hint`` describes."""
    if value is None or hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _convert_union(value, [a for a in args if a is not type(None)])
    if origin is typing.Literal or hint in (str, bool):
        return value
    if hint is float:
        return float(value) if isinstance(value, (int, float, str)) else value
    if hint is int:
        return (
            int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        )
    if isinstance(hint, type) and issubclass(hint, Tensor):
        return torch.as_tensor(np.asarray(_untyped(value)))
    if isinstance(hint, type) and issubclass(hint, np.ndarray):
        return np.asarray(_untyped(value))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        from_dict = getattr(hint, "from_dict", None)
        return from_dict(value) if callable(from_dict) else decode(hint, value)
    if origin in (list, Sequence) and isinstance(value, list):
        item = args[0] if args else Any
        return [_convert(v, item) for v in value]
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0]) for v in value)
        return tuple(_convert(v, a) for v, a in zip(value, args, strict=False))
    if origin in (dict, Mapping) and isinstance(value, dict):
        item = args[1] if len(args) == 2 else Any
        return {k: _convert(v, item) for k, v in value.items()}
    return value


def _convert_union(value: Any, options: list[Any]) -> Any:
    if len(options) == 1:
        return _convert(value, options[0])
    if isinstance(value, str) and str in options:
        return value
    for option in options:
        if option in (str, bool, int, float):
            if isinstance(value, option) and not (option is int and isinstance(value, bool)):
                return value
            continue
        try:
            return _convert(value, option)
        except (TypeError, ValueError, ConfigError):
            continue
    return _untyped(value)


def _untyped(value: Any) -> Any:
    """Turn the non-finite strings of nested lists and dicts back into floats."""
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "+inf"):
        return float(value)
    if isinstance(value, list):
        return [_untyped(v) for v in value]
    if isinstance(value, dict):
        return {k: _untyped(v) for k, v in value.items()}
    return value
