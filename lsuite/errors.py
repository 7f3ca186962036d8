"""Errors raised for invalid user input."""

from __future__ import annotations


class ConfigError(ValueError):
    """Invalid configuration or argument; the message names the key, value and what is allowed."""


def require(condition: bool, key: str, value: object, expected: str) -> None:
    """Raise a `ConfigError` naming ``key`` unless ``condition`` holds.

    Args:
        condition: the check that must pass.
        key: argument or config key that is checked.
        value: the value received.
        expected: what is allowed, e.g. ``"an int >= 1"``.

    Raises:
        ConfigError: when ``condition`` is false.
    """
    if not condition:
        raise ConfigError(f"{key}: got {value!r}; expected {expected}")
