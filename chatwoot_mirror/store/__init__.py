"""Local state behind one interface of primitives (:class:`Store`).

A URL selects the backend (``CHATWOOT_MIRROR_STORE``), as in kombu:

* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``: the embedded default
  (``CHATWOOT_MIRROR_DB=path`` is its short form), shared by the processes of one host;
* ``memory://``: the in-memory reference backend, for unit tests (one process, nothing
  survives it);
* ``redis://[:password@]host:port/db`` or ``rediss://`` (TLS), optionally with
  ``?prefix=name:``: one store shared by several hosts (the ``[redis]`` extra);
  ``redis+sentinel://[:password@]host:26379[,host:26379]/service_name/db``: the same, on
  whichever server the Sentinels name master (failovers followed);
  ``redis+cluster://[:password@]host:port[,host:port]`` (or ``rediss+cluster://``): the same
  on a Redis Cluster, sharded by hash tags (:mod:`.cluster`).
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import ContactRecord, HandoffRecord, OutboxCounts, OutboxRow, Store, ValueItem
from .memory import MemoryStore
from .sqlite import SQLiteStore

VARIABLE = "CHATWOOT_MIRROR_STORE"
REDIS_SCHEMES = ("redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster",
                 "rediss+cluster")
SCHEMES = ("sqlite", "memory", *REDIS_SCHEMES)


def parse_store_url(url: str) -> tuple[str, str]:
    """``(scheme, location)`` of a store URL; :class:`ConfigError` naming
    ``CHATWOOT_MIRROR_STORE`` when it is not one this version can open."""
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ConfigError(VARIABLE, "must be sqlite:///path/to/file.db, redis://host:6379/0 "
                                    f"or memory://, not {url!r}")
    if scheme == "sqlite":
        # sqlite:///x.db is the relative x.db, sqlite:////srv/x.db the absolute /srv/x.db
        path = rest[1:] if rest.startswith("/") else rest
        if not path.strip() or path.endswith("/"):
            raise ConfigError(VARIABLE, "names no file: use sqlite:///path/to/file.db")
        return scheme, path
    if scheme in REDIS_SCHEMES:
        if not rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]:
            raise ConfigError(VARIABLE, "names no Redis host: use redis://host:6379/0")
        if scheme.endswith("+sentinel"):
            from .redis import sentinel_spec

            sentinel_spec(url.strip())  # a typo fails here, not at the first message
        return scheme, url.strip()
    if rest:
        raise ConfigError(VARIABLE, "memory:// takes nothing after the scheme")
    return scheme, ""


def sqlite_url(path: str) -> str:
    """The store URL of a SQLite file path (``CHATWOOT_MIRROR_DB``'s long form)."""
    return "sqlite:///" + path


def open_store(url: str, *, spill: str | None = None) -> Store:
    """Open the backend ``url`` selects (see the module docstring). ``spill``: a local
    SQLite file that keeps the writes a shared (Redis) store cannot take
    (:class:`~.spill.SpillingStore`); the embedded backends need none."""
    scheme, location = parse_store_url(url)
    if scheme == "memory":
        return MemoryStore()
    if scheme in REDIS_SCHEMES:
        from .redis import RedisStore  # the optional redis package is imported only here

        store: Store
        if scheme.endswith("+cluster"):
            from .cluster import RedisClusterStore

            store = RedisClusterStore(location)
        else:
            store = RedisStore(location)
        if spill is not None:
            from .spill import SpillingStore

            store = SpillingStore(store, spill)
        return store
    return SQLiteStore(location)


__all__ = ["ContactRecord", "HandoffRecord", "MemoryStore", "OutboxCounts", "OutboxRow",
           "SQLiteStore", "Store", "ValueItem", "open_store", "parse_store_url",
           "sqlite_url"]
