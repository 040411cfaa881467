"""What is waiting to reach Chatwoot: the outbox's counts and the local spill's, read the
same way for ``stats()``, ``chatwoot-mirror status``, ``doctor`` and the metrics."""

from __future__ import annotations

from typing import Any

from .errors import StoreError
from .store import Store


def outbox_numbers(store: Store, now: float) -> dict[str, Any]:
    """``queued``, ``in_flight``, ``dead_letters``, ``oldest_queued_age`` (seconds) of the
    store (each ``None``, with ``store_error`` saying why, while it cannot answer), and
    ``spilled`` with ``oldest_spilled_age`` of its local spill (0 without one)."""
    numbers: dict[str, Any]
    try:
        counts = store.outbox_counts(now)
        numbers = {
            "queued": counts.queued, "in_flight": counts.in_flight,
            "dead_letters": counts.dead,
            "oldest_queued_age": now - counts.oldest_queued_at
            if counts.oldest_queued_at else 0.0,
            "store_error": None,
        }
    except StoreError as exc:
        numbers = {"queued": None, "in_flight": None, "dead_letters": None,
                   "oldest_queued_age": None, "store_error": str(exc)}
    try:
        spilled, oldest = store.spilled()
    except StoreError as exc:  # the spill file is unreadable: say so, count nothing
        spilled, oldest = 0, None
        numbers["store_error"] = numbers["store_error"] or f"spill unreadable: {exc}"
    numbers["spilled"] = spilled
    numbers["oldest_spilled_age"] = now - oldest if oldest else 0.0
    return numbers
