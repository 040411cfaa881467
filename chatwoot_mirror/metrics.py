"""Prometheus metrics (optional: ``pip install chatwoot-mirror[metrics]``,
``CHATWOOT_METRICS=true``); the Flask blueprint then serves them at ``GET /metrics``.

* ``chatwoot_mirror_messages_total{direction, outcome}``: queued items finished
  (``delivered`` or ``dead_lettered``); direction ``incoming``/``outgoing`` (mirrored),
  ``relay`` (to the customer) or ``action`` (a handoff's Chatwoot-side work);
* ``chatwoot_mirror_retries_total{direction}``: failed attempts that will be retried;
* ``chatwoot_mirror_handoffs_total{reason, outcome}``: changes of hands, outcome
  ``to_humans`` or ``to_bot``;
* ``chatwoot_mirror_queue_messages``, ``chatwoot_mirror_queue_oldest_age_seconds``,
  ``chatwoot_mirror_dead_letters``: read from the store at each scrape (every process
  sharing the store);
* ``chatwoot_mirror_chatwoot_health{state}`` (1 for the current state of ``ok``,
  ``degraded``, ``down``, else 0), ``chatwoot_mirror_chatwoot_health_since_seconds``,
  ``chatwoot_mirror_chatwoot_last_error_timestamp_seconds``: this process's view of
  Chatwoot (:mod:`.pacing`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .backlog import outbox_numbers
from .errors import ConfigError
from .pacing import DEGRADED, DOWN, OK, Health
from .store import Store

if TYPE_CHECKING:
    from .delivery import MirroredMessage

#: ``register(callback)``: how the mirror lets metrics hear of changes of hands
Register = Callable[[Callable[[str, str], None]], object]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The metrics of one mirror, in a registry of their own. It is handed what it reads
    (the store, and the registrars of handoff callbacks) rather than the mirror itself, so
    it depends on nothing above it."""

    def __init__(self, store: Store, *, on_handoff: Register, on_resume: Register,
                 health: Callable[[], Health] | None = None) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise ConfigError(
                "CHATWOOT_METRICS",
                "is true but prometheus-client is not installed: "
                "pip install 'chatwoot-mirror[metrics]'",
            ) from None
        self._prom = prom
        self.registry = prom.CollectorRegistry(auto_describe=True)
        self.messages = prom.Counter(
            "chatwoot_mirror_messages", "Queued items finished, by direction and outcome",
            ["direction", "outcome"], registry=self.registry)
        self.retries = prom.Counter(
            "chatwoot_mirror_retries", "Failed attempts that will be retried",
            ["direction"], registry=self.registry)
        self.handoffs = prom.Counter(
            "chatwoot_mirror_handoffs", "Contacts changing hands, by reason and outcome",
            ["reason", "outcome"], registry=self.registry)
        self.registry.register(_QueueCollector(store, health))
        on_handoff(lambda key, reason: self.handoffs.labels(reason, "to_humans").inc())
        on_resume(lambda key, reason: self.handoffs.labels(reason, "to_bot").inc())

    def record(self, outcome: str, message: MirroredMessage) -> None:
        if outcome == "retried":
            self.retries.labels(message.direction).inc()
        else:
            self.messages.labels(message.direction, outcome).inc()

    def render(self) -> bytes:
        """The exposition text for a scrape."""
        return self._prom.generate_latest(self.registry)


class _QueueCollector:
    """Gauges read from the store when scraped: they cover every process."""

    def __init__(self, store: Store, health: Callable[[], Health] | None) -> None:
        self.store = store
        self.health = health
        from prometheus_client.core import GaugeMetricFamily

        self.gauge = GaugeMetricFamily

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        if self.health is not None:
            health = self.health()
            states = self.gauge("chatwoot_mirror_chatwoot_health",
                                "Chatwoot's health as this process sees it (1: current)",
                                labels=["state"])
            for state in (OK, DEGRADED, DOWN):
                states.add_metric([state], 1.0 if health.state == state else 0.0)
            yield states
            yield self.gauge("chatwoot_mirror_chatwoot_health_since_seconds",
                             "When Chatwoot's health last changed (epoch)", value=health.since)
            yield self.gauge("chatwoot_mirror_chatwoot_last_error_timestamp_seconds",
                             "When Chatwoot last failed to answer a request (epoch, 0: never)",
                             value=health.last_error_at or 0.0)
        numbers = outbox_numbers(self.store, time.time())
        # the spill is local: its numbers are there while the store is not
        yield self.gauge("chatwoot_mirror_spill_messages",
                         "Writes kept in the local spill while the store was away",
                         value=numbers["spilled"])
        yield self.gauge("chatwoot_mirror_spill_oldest_age_seconds",
                         "Age of the oldest write in the local spill",
                         value=numbers["oldest_spilled_age"])
        if numbers["queued"] is None:
            return  # a scrape must not fail because the store is busy
        # queued counts the rows being delivered too (in_flight counts their contacts)
        yield self.gauge("chatwoot_mirror_queue_messages", "Messages waiting for delivery",
                         value=numbers["queued"])
        yield self.gauge("chatwoot_mirror_queue_oldest_age_seconds",
                         "Age of the oldest message waiting", value=numbers["oldest_queued_age"])
        yield self.gauge("chatwoot_mirror_dead_letters", "Messages refused for good",
                         value=numbers["dead_letters"])
