"""A pace shared by every delivery worker of a process (and with a Redis store, by every
host), and Chatwoot's health as it sees it.

Chatwoot's only limit on the public API is rack-attack's 3000 requests per minute per
client IP, answered with a bare ``429 Retry later`` (no ``Retry-After``). A token bucket
keeps us under a configured rate, one token per request (a new contact's message costs up
to four); with a Redis store the bucket is in Redis (``Store.take_tokens``), so N hosts
together stay under it, and each host falls back to its own while Redis is away. Each 429
pauses every worker, with a pause that doubles while 429s continue, and halves the rate,
which then recovers with each success.

Every request's outcome is observed too (:meth:`Pacer.observe`): any HTTP answer means
Chatwoot is up, no answer (a connection refused or dropped, a timeout, a 5xx) means it is
not. From the last outcomes the pacer tells three states apart, and a failed message's
next attempt depends on which (:meth:`Pacer.retry_delay`):

* ``down``: the last several requests all went unanswered. Every worker pauses; after the
  pause one request at a time goes as a probe, and the pause doubles while probes fail.
  The first answer ends it, so a backlog drains as soon as Chatwoot is back.
* ``degraded``: Chatwoot answers most requests and fails some. A failed message is
  transient trouble: it is retried soon, whatever its attempt count (up to a limit).
* ``ok``: Chatwoot answers nearly everything, so a message that keeps failing has a
  problem of its own: it backs off exponentially, for that contact only.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .outbox import Backoff

log = logging.getLogger("chatwoot_mirror.delivery")

OK, DEGRADED, DOWN = "ok", "degraded", "down"
#: unanswered requests in a row that make Chatwoot "down"
DOWN_AFTER = 6
#: outcomes remembered, and for how long, to tell "ok" from "degraded"
WINDOW, WINDOW_SECONDS = 20, 60.0
#: failed attempts of one message retried "soon" while Chatwoot is degraded
SOON_ATTEMPTS = 8
#: a probe whose outcome never came (its message needed no request) stops blocking
PROBE_TIMEOUT = 15.0


@dataclass(frozen=True)
class Health:
    """Chatwoot's health as this process sees it. Times are ``time.time()`` values."""

    state: str
    since: float
    failures: int  # failed requests among the last ``observed``
    observed: int
    last_error: str | None
    last_error_at: float | None


class Pacer:
    """``per_minute=None`` or ``0``: no limit (a 429 still pauses everyone)."""

    def __init__(
        self,
        per_minute: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_pause: float = 60.0,
        outage_pause: float = 1.0,
        max_outage_pause: float = 30.0,
        wall: Callable[[], float] = time.time,
        shared: Callable[[float, float], float | None] | None = None,
    ) -> None:
        #: ``shared(rate per minute, capacity)``: take a token from a bucket every host
        #: shares (``Store.take_tokens``): 0 taken, seconds to wait, ``None``: none now
        self.shared = shared
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
        # health (observe): outcomes as (clock time, answered), the unanswered streak
        self.wall = wall
        self.outage_pause = outage_pause
        self.max_outage_pause = max(outage_pause, max_outage_pause)
        self._outcomes: deque[tuple[float, bool]] = deque(maxlen=WINDOW)
        self._unanswered = 0
        self._state, self._since = OK, wall()
        self._last_error: tuple[str, float] | None = None
        self._outage_until = 0.0
        self._outage_pauses = 0
        self._probe: tuple[int, float] | None = None  # (thread id, taken at)

    def wait_time(self) -> float:
        """Seconds to wait before the next request may go; 0 takes a token now."""
        gate = self.gate_time()
        return gate if gate > 0 else self.token_time()

    def gate_time(self) -> float:
        """Seconds every worker waits now (a 429's pause, an outage's pause, another
        thread's probe); 0: go (this thread may become the outage's probe)."""
        with self._lock:
            now = self.clock()
            if now < self.paused_until:
                return self.paused_until - now
            if self._state == DOWN:
                if now < self._outage_until:
                    return self._outage_until - now
                if self._probe is not None and now - self._probe[1] < PROBE_TIMEOUT:
                    return 0.05  # someone is probing: wait for its answer
                self._probe = (threading.get_ident(), now)
            return 0.0

    def token_time(self) -> float:
        """Seconds until one request's token; 0 takes it now. From the bucket every host
        of the store shares (``shared``), or this process's own while there is none."""
        with self._lock:
            rate, capacity = self.rate, self.capacity
        if rate is None:
            return 0.0
        if self.shared is not None:
            wait = self.shared(rate, capacity)
            if wait is not None:
                return wait
        with self._lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self._updated) * rate / 60)
            self._updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) * 60 / rate

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block (a worker, before a message) while every worker must wait; False if
        ``stop`` was set meanwhile. The pace itself is per request: :meth:`take`."""
        return _wait(self.gate_time, stop)

    def take(self, stop: threading.Event | None = None) -> bool:
        """Block (the client, before each request) until the pace allows one more."""
        return _wait(self.token_time, stop)

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

    # -- health --------------------------------------------------------------------------

    def observe(self, answered: bool, error: str | None = None) -> None:
        """One request's outcome: ``answered`` is any HTTP answer (a 4xx or a 429 too:
        Chatwoot is up); not answered is a refused or dropped connection, a timeout or a
        5xx, with ``error`` saying which."""
        with self._lock:
            now = self.clock()
            self._outcomes.append((now, answered))
            if self._probe is not None and self._probe[0] == threading.get_ident():
                self._probe = None
            if answered:
                self._unanswered = 0
                self._outage_pauses = 0
                self._outage_until = 0.0
            else:
                self._unanswered += 1
                self._last_error = ((error or "no answer")[:300], self.wall())
                if self._unanswered >= DOWN_AFTER and now >= self._outage_until:
                    # entering the outage, or a probe failed: pause everyone, longer
                    self._outage_until = now + min(
                        self.max_outage_pause, self.outage_pause * 2.0 ** self._outage_pauses)
                    self._outage_pauses += 1
            self._set_state(self._judge(now))

    def _recent(self, now: float) -> list[bool]:
        """The outcomes of the last ``WINDOW_SECONDS`` (answered or not)."""
        return [ok for at, ok in self._outcomes if now - at <= WINDOW_SECONDS]

    def _judge(self, now: float) -> str:
        if self._unanswered >= DOWN_AFTER:
            return DOWN
        return DEGRADED if self._recent(now).count(False) >= 2 else OK

    def _set_state(self, state: str) -> None:
        if state != self._state:
            level = logging.WARNING if state == DOWN else logging.INFO
            log.log(level, "chatwoot health changed state=%s was=%s last_error=%s",
                    state, self._state, self._last_error[0] if self._last_error else None)
            self._state, self._since = state, self.wall()

    def is_down(self) -> bool:
        """True while Chatwoot answers nothing (no short retries then: probes decide)."""
        with self._lock:
            return self._unanswered >= DOWN_AFTER

    def finished(self) -> None:
        """The calling worker is done with its message: a probe it held without making
        a request (nothing to send to Chatwoot) no longer blocks the others."""
        with self._lock:
            if self._probe is not None and self._probe[0] == threading.get_ident():
                self._probe = None

    def health(self) -> Health:
        """A snapshot of Chatwoot's health: state, since when, and the last error."""
        with self._lock:
            now = self.clock()
            self._set_state(self._judge(now))  # failures age out of the window
            recent = self._recent(now)
            error, at = self._last_error or (None, None)
            return Health(self._state, self._since, recent.count(False), len(recent),
                          error, at)

    def retry_delay(self, attempts: int, backoff: Backoff, rng: random.Random) -> float:
        """When a message that failed its ``attempts``-th attempt goes again, by health."""
        with self._lock:
            now = self.clock()
            state = self._judge(now)
            outage_left = max(0.0, self._outage_until - now)
        if state == DOWN:
            # its turn comes after the outage pause; the probe decides when that ends
            return outage_left + backoff.delay(1, rng)
        if state == DEGRADED:
            if attempts <= SOON_ATTEMPTS:  # a tenth to half of the first retry's delay
                return backoff.base * rng.uniform(0.1, 0.5)
            return backoff.delay(attempts - SOON_ATTEMPTS + 2, rng)  # it may be this one's
        return backoff.delay(attempts, rng)


def _wait(delay_of: Callable[[], float], stop: threading.Event | None) -> bool:
    while True:
        delay = delay_of()
        if delay <= 0:
            return True
        if stop is not None:
            if stop.wait(delay):
                return False
        else:
            time.sleep(delay)
