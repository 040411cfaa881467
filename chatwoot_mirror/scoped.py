"""Small named state of the host's integrations (which channel a contact writes through, a
Typebot session), kept in the mirror's store so that every process sharing it agrees."""

from __future__ import annotations

import time

from .store import Store, ValueItem


class ScopedValues:
    """The store's key-value primitives under one ``scope``: what an integration may keep
    without reaching into the mirror's store itself."""

    def __init__(self, store: Store, scope: str) -> None:
        self.store = store
        self.scope = scope

    def get(self, key: str) -> str | None:
        """The value under ``key``, or ``None`` (unknown or expired)."""
        return self.store.get_value(self.scope, key, time.time())

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``, for ``ttl`` seconds (``None``: until replaced)."""
        expires = None if ttl is None else time.time() + ttl
        self.store.set_value(self.scope, key, value, expires)

    def set_many(self, items: list[tuple[str, str]], ttl: float | None = None) -> None:
        """Store each ``(key, value)`` for ``ttl`` seconds, in one round trip where the
        store can (see :meth:`Store.set_values`)."""
        self.store.set_values(self.items(items, ttl))

    def items(self, items: list[tuple[str, str]],
              ttl: float | None = None) -> list[ValueItem]:
        """``set_many``'s writes, as the store's ``(scope, key, value, expires_at)`` items,
        for a caller that stores them with another write (:meth:`Store.complete_with_values`)."""
        expires = None if ttl is None else time.time() + ttl
        return [(self.scope, key, value, expires) for key, value in items]

    def delete(self, key: str, expected: str | None = None) -> bool:
        """Remove ``key`` (only while it holds ``expected``, when given)."""
        return self.store.delete_value(self.scope, key, expected)
