"""Local state behind one interface of primitives (:class:`Store`).

A URL selects the backend (``CHATWOOT_MIRROR_STORE``), as in kombu:

* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``: the embedded default
  (``CHATWOOT_MIRROR_DB=path`` is its short form), shared by the processes of one host;
* ``memory://``: the in-memory reference backend, for unit tests (one process, nothing
  survives it).
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import ContactRecord, HandoffRecord, OutboxCounts, OutboxRow, Store
from .memory import MemoryStore
from .sqlite import SQLiteStore

VARIABLE = "CHATWOOT_MIRROR_STORE"
SCHEMES = ("sqlite", "memory")


def parse_store_url(url: str) -> tuple[str, str]:
    """``(scheme, location)`` of a store URL; :class:`ConfigError` naming
    ``CHATWOOT_MIRROR_STORE`` when it is not one this version can open."""
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ConfigError(VARIABLE, f"must be sqlite:///path/to/file.db or memory://, not "
                                    f"{url!r}")
    if scheme == "sqlite":
        # sqlite:///x.db is the relative x.db, sqlite:////srv/x.db the absolute /srv/x.db
        path = rest[1:] if rest.startswith("/") else rest
        if not path.strip() or path.endswith("/"):
            raise ConfigError(VARIABLE, "names no file: use sqlite:///path/to/file.db")
        return scheme, path
    if rest:
        raise ConfigError(VARIABLE, "memory:// takes nothing after the scheme")
    return scheme, ""


def sqlite_url(path: str) -> str:
    """The store URL of a SQLite file path (``CHATWOOT_MIRROR_DB``'s long form)."""
    return "sqlite:///" + path


def open_store(url: str) -> Store:
    """Open the backend ``url`` selects (see the module docstring)."""
    scheme, location = parse_store_url(url)
    if scheme == "memory":
        return MemoryStore()
    return SQLiteStore(location)


__all__ = ["ContactRecord", "HandoffRecord", "MemoryStore", "OutboxCounts", "OutboxRow",
           "SQLiteStore", "Store", "open_store", "parse_store_url", "sqlite_url"]
