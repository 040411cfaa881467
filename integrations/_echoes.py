"""Recognising our own messages when a provider echoes them back as ``fromMe`` webhooks."""

from __future__ import annotations

import threading
import time


class RecentSends:
    """Texts this process sent lately, per contact: how an adapter whose provider marks
    nothing recognises its own messages when they come back as ``fromMe`` webhooks."""

    def __init__(self, ttl: float = 300.0, limit: int = 10_000) -> None:
        self.ttl = ttl
        self.limit = limit
        self._sent: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def add(self, contact: str, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._sent) >= self.limit:
                self._sent = {k: t for k, t in self._sent.items() if now - t < self.ttl}
            self._sent[(contact, text.strip())] = now

    def pop(self, contact: str, text: str) -> bool:
        """True (once) when ``text`` was sent to ``contact`` within the TTL."""
        with self._lock:
            sent = self._sent.pop((contact, text.strip()), None)
        return sent is not None and time.monotonic() - sent < self.ttl
