"""What this process's mirror has done: counters for ``stats()``, Prometheus metrics when
enabled, and Chatwoot's last known health in the store (for ``chatwoot-mirror doctor``)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .delivery import RELAY, MirroredMessage
from .doctor import HEALTH_KEY, HEALTH_SCOPE
from .errors import StoreError
from .metrics import Metrics
from .pacing import Health
from .store import Store
from .workers import DEAD, DONE

log = logging.getLogger("chatwoot_mirror")

COUNTERS = ("delivered", "retried", "dead_lettered", "not_queued")


class Activity:
    """The delivery workers' ``on_result``, and the host path's ``not_queued`` count."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        #: Prometheus metrics when ``CHATWOOT_METRICS=true`` (see :mod:`.metrics`)
        self.metrics: Metrics | None = None
        self._lock = threading.Lock()
        self._counters: dict[str, Any] = {**dict.fromkeys(COUNTERS, 0), "last_error": None,
                                          "last_error_at": None}
        #: Chatwoot's health as the pacer judges it (the mirror wires it)
        self.health: Callable[[], Health] | None = None
        self._written: tuple[bool | None, str | None, float] = (None, None, 0.0)

    def counters(self) -> dict[str, Any]:
        """A copy of this process's counters since it started, and the last error."""
        with self._lock:
            return dict(self._counters)

    def count(self, name: str, error: str | None) -> None:
        with self._lock:
            self._counters[name] += 1
            if error:
                self._counters["last_error"] = error
                self._counters["last_error_at"] = time.time()

    def on_result(self, outcome: str, message: MirroredMessage, error: str | None) -> None:
        """One delivery attempt's outcome (``DeliveryWorkers.on_result``)."""
        name = "delivered" if outcome == DONE else "dead_lettered" if outcome == DEAD else (
            "retried"
        )
        self.count(name, error)
        if self.metrics is not None:
            self.metrics.record(name, message)
        if message.direction != RELAY:  # relays talk to the provider, not to Chatwoot
            self._remember_health(outcome == DONE, error)

    def _remember_health(self, ok: bool, error: str | None) -> None:
        """Write down how Chatwoot last answered, and its health, for ``status`` and
        ``doctor`` in other processes: when either changes, and at most once a minute
        otherwise (not a write per message)."""
        if self.store is None:
            return
        now = time.time()
        health = self.health() if self.health is not None else None
        state = health.state if health is not None else None
        last_ok, last_state, last_at = self._written
        if last_ok == ok and last_state == state and now - last_at < 60.0:
            return
        self._written = (ok, state, now)
        seen: dict[str, Any] = {"at": now, "ok": ok,
                                "error": None if ok else (error or "")[:300]}
        if health is not None:
            seen.update(state=health.state, since=health.since,
                        last_error=health.last_error, last_error_at=health.last_error_at)
        try:
            self.store.set_value(HEALTH_SCOPE, HEALTH_KEY, json.dumps(seen))
        except StoreError as exc:
            log.debug("chatwoot health not recorded error=%s", exc)
