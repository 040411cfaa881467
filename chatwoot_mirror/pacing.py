"""A pace shared by every delivery worker of a process.

Chatwoot's only limit on the public API is rack-attack's 3000 requests per minute per
client IP, answered with a bare ``429 Retry later`` (no ``Retry-After``). A token bucket
keeps us under a configured rate; each 429 pauses every worker, with a pause that doubles
while 429s continue, and halves the rate, which then recovers with each success.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """``per_minute=None`` or ``0``: no limit (a 429 still pauses everyone)."""

    def __init__(
        self,
        per_minute: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_pause: float = 60.0,
    ) -> None:
        self.max_rate = float(per_minute) if per_minute else None
        self.rate = self.max_rate
        # A burst of at most a fifth of a minute's budget keeps any 60 s window under
        # rate + rate/5, below Chatwoot's 3000 with the default 2400.
        self.capacity = max(1.0, self.max_rate / 5) if self.max_rate else 0.0
        self.tokens = self.capacity
        self.clock = clock
        self.max_pause = max_pause
        self.paused_until = 0.0
        self.consecutive_429 = 0
        self._lock = threading.Lock()
        self._updated = clock()

    def wait_time(self) -> float:
        """Seconds to wait before the next request may go; 0 takes a token now."""
        with self._lock:
            now = self.clock()
            if now < self.paused_until:
                return self.paused_until - now
            if self.rate is None:
                return 0.0
            self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.rate / 60)
            self._updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) * 60 / self.rate

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until a request may go; False if ``stop`` was set while waiting."""
        while True:
            delay = self.wait_time()
            if delay <= 0:
                return True
            if stop is not None:
                if stop.wait(delay):
                    return False
            else:
                time.sleep(delay)

    def penalize(self) -> float:
        """After a 429: pause everyone and halve the rate. Returns the pause in seconds."""
        with self._lock:
            now = self.clock()
            if now < self.paused_until:
                # Sent before the pause began (parallel workers): same storm, same pause.
                return self.paused_until - now
            self.consecutive_429 += 1
            pause = min(self.max_pause, 2.0 ** (self.consecutive_429 - 1))
            self.paused_until = now + pause
            if self.rate is not None and self.max_rate is not None:
                self.rate = max(self.max_rate / 8, self.rate / 2)
                self.tokens = 0.0
            return pause

    def reward(self) -> None:
        """After a success: the 429 streak ends and the rate climbs back a little."""
        with self._lock:
            self.consecutive_429 = 0
            if self.rate is not None and self.max_rate is not None and self.rate < self.max_rate:
                self.rate = min(self.max_rate, self.rate + self.max_rate / 200)
