"""Adapter settings from the environment: a missing or wrong one fails at start-up naming
the variable."""

from __future__ import annotations

import os
from collections.abc import Mapping

from chatwoot_mirror.config import parse_bool
from chatwoot_mirror.errors import ConfigError


def env_value(environ: Mapping[str, str] | None, name: str, hint: str,
              required: bool = True) -> str | None:
    """An adapter setting from the environment; a missing required one fails at start-up
    with a message naming the variable and where to find its value."""
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if not value and required:
        raise ConfigError(name, f"is not set: {hint}")
    return value or None


def env_flag(environ: Mapping[str, str] | None, name: str) -> bool:
    """A boolean adapter setting, read like the library's own (false when unset)."""
    value = env_value(environ, name, "", required=False)
    return False if value is None else parse_bool(name, value)
