"""A test-only callback factory that raises a `ConfigError` while lsuite-train builds the run."""

from lsuite.errors import ConfigError


def fail(key: str = "planted.key", value: object = 1) -> None:
    """Raise ``ConfigError`` naming ``key`` and ``value``, as a check at build time would."""
    raise ConfigError(f"{key}: got {value!r}; expected a value this test never accepts")
