"""Recognising our own messages when a provider echoes them back as ``fromMe`` webhooks.

Kept in the mirror's store once the adapter is connected to a mirror (``share``), so that
with several hosts an echo arriving at another host than the one that sent it is still
recognised, and not taken for the business owner typing (which pauses the bot). Until
then, or while the store fails, this process remembers on its own.
"""

from __future__ import annotations

import hashlib
import threading
import time

from chatwoot_mirror.errors import StoreError
from chatwoot_mirror.scoped import ScopedValues


class RecentSends:
    """Texts sent lately, per contact, for ``ttl`` seconds."""

    def __init__(self, ttl: float = 300.0, limit: int = 10_000) -> None:
        self.ttl = ttl
        self.limit = limit
        self.shared: ScopedValues | None = None
        self._sent: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def share(self, values: ScopedValues) -> None:
        """Remember in ``values`` (the mirror's store) from now on."""
        self.shared = values

    def add(self, contact: str, text: str) -> None:
        if self.shared is not None:
            try:
                # a digest: the store never holds the customer's words for this
                self.shared.set(_key(contact, text), "sent", ttl=self.ttl)
                return
            except StoreError:
                pass  # remembered here instead; another host may not recognise it
        now = time.monotonic()
        with self._lock:
            if len(self._sent) >= self.limit:
                self._sent = {k: t for k, t in self._sent.items() if now - t < self.ttl}
            self._sent[(contact, text.strip())] = now

    def pop(self, contact: str, text: str) -> bool:
        """True (once, across every host sharing the store) when ``text`` was sent to
        ``contact`` within the TTL."""
        if self.shared is not None:
            try:
                key = _key(contact, text)
                # get() honours the expiry; delete(expected=) makes one host the winner
                if self.shared.get(key) is not None and self.shared.delete(key, "sent"):
                    return True
            except StoreError:
                pass
        with self._lock:
            sent = self._sent.pop((contact, text.strip()), None)
        return sent is not None and time.monotonic() - sent < self.ttl


def _key(contact: str, text: str) -> str:
    return hashlib.sha256(f"{contact}\x00{text.strip()}".encode()).hexdigest()[:32]
