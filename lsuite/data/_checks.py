"""Check data-module arguments, raising a `ConfigError` that names the ``data.`` config key."""

from __future__ import annotations

import os
from pathlib import Path

from lsuite.errors import require

#: Config group of every data module; error messages name keys as ``data.<argument>``.
PREFIX = "data."


def is_int(value: object) -> bool:
    """Return whether ``value`` is an int and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: object, minimum: int) -> None:
    """Require an int ``>= minimum``.

    Args:
        name: argument name, without the ``data.`` prefix.
        value: the value received.
        minimum: smallest allowed value.
    """
    require(is_int(value) and value >= minimum, PREFIX + name, value, f"an int >= {minimum}")


def check_bool(name: str, value: object) -> None:
    """Require a bool.

    Args:
        name: argument name, without the ``data.`` prefix.
        value: the value received.
    """
    require(isinstance(value, bool), PREFIX + name, value, "true or false")


def check_fraction(name: str, value: object, *, allow_zero: bool) -> None:
    """Require a number in ``[0, 1)`` (``allow_zero``) or ``(0, 1)``.

    Args:
        name: argument name, without the ``data.`` prefix.
        value: the value received.
        allow_zero: whether 0 is allowed.
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    low_ok = number and (value >= 0 if allow_zero else value > 0)
    interval = "[0, 1)" if allow_zero else "(0, 1)"
    require(low_ok and value < 1, PREFIX + name, value, f"a number in {interval}")


def check_path(name: str, value: object) -> Path:
    """Require a non-empty path and return it with ``~`` expanded, made absolute.

    Args:
        name: argument name, without the ``data.`` prefix.
        value: the value received (a string or path-like object).

    Returns:
        The absolute path, relative paths taken from the current working directory.
    """
    usable = isinstance(value, (str, os.PathLike)) and str(value) != ""
    require(usable, PREFIX + name, value, "a directory path (string)")
    return Path(value).expanduser().absolute()  # type: ignore[arg-type]
