"""A circuit breaker for the store behind the spill: after one failure, calls skip the store
for a while instead of each paying its timeout.

Only the background mover probes (:meth:`Circuit.probe_due`): the host's thread never
waits on a store that just failed, so its cost stays the spill's write after the first
failed attempt of each outage.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("chatwoot_mirror.store")


class Circuit:
    """Closed (use the store) or open (skip it) since a failure; the interval between
    probes doubles while the store stays away, from ``interval`` up to ``max_interval``."""

    def __init__(self, interval: float = 0.5, max_interval: float = 2.0) -> None:
        self.interval = interval
        self.max_interval = max_interval
        self._lock = threading.Lock()
        self._opened_at: float | None = None  # monotonic; None: closed
        self._next_probe = 0.0
        self._wait = interval
        self._failures = 0

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def trip(self, error: object) -> None:
        """A call failed for want of the store: open (or keep open) the circuit."""
        with self._lock:
            now = time.monotonic()
            self._failures += 1
            if self._opened_at is None:
                self._opened_at = now
                self._wait = self.interval
                log.error("store unavailable, writes go to the local spill error=%s", error)
            else:
                self._wait = min(self._wait * 2, self.max_interval)
            self._next_probe = now + self._wait

    def probe_due(self) -> bool:
        """Whether the circuit is closed, or open and due for one probe now."""
        with self._lock:
            return self._opened_at is None or time.monotonic() >= self._next_probe

    def close(self) -> None:
        """A probe (or any call) reached the store: close the circuit."""
        with self._lock:
            if self._opened_at is None:
                return
            down = time.monotonic() - self._opened_at
            failures, self._opened_at, self._failures = self._failures, None, 0
        log.warning("store available again down_seconds=%.1f failed_calls=%d", down, failures)
