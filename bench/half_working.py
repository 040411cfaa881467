"""End-to-end delivery latency when Chatwoot half-works (issue #19).

    python bench/half_working.py            # every scenario
    python bench/half_working.py a|b|c|d    # one of them

Latency runs from ``log_exchange`` returning to the message existing in the Chatwoot
emulator (its ``message_created`` event). Scenarios:

a  a healthy emulator answering in 20 ms: 100 exchanges for 10 new contacts, made at 10
   exchanges/s (a busy bot's steady traffic)
b  30% of requests answered 500 and 10% committed then the connection dropped: the same
c  a 60 s full outage with 1000 messages queued for 100 contacts, then recovery: how long
   from recovery to an empty outbox, against the configured pace (2400 requests/min)
d  Chatwoot's default rack-attack limit (3000 requests/min) with no pace of our own:
   4000 messages for 100 contacts (4300 requests: over a minute's budget); how many
   429s and how long

Reports p50, p99 and max latency, the time to drain everything, and lost and doubled
messages (each message's text is unique).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.testing import FakeChatwoot, Faults


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Arrivals:
    """When each text first appeared in the emulator, and how often."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.count: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, event: str, payload: dict[str, Any]) -> None:
        if event != "message_created" or payload.get("private"):
            return
        text = str(payload.get("content") or "").removeprefix("🤖 ")
        with self.lock:
            self.count[text] += 1
            self.first.setdefault(text, time.time())


def run(faults: Faults, *, exchanges: int, contacts: int, per_minute: int,
        outage: float = 0.0, rate: float | None = None,
        timeout: float = 300.0) -> dict[str, float]:
    """``rate``: exchanges per second the host makes (a bot's steady traffic); ``None``
    logs them all at once (a backlog)."""
    arrivals = Arrivals()
    with FakeChatwoot(faults=faults) as cw, tempfile.TemporaryDirectory() as tmp:
        cw.emulator.listeners.append(arrivals)
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        account_id=cw.account_id, bot_token=cw.bot_token,
                        db_path=f"{tmp}/m.db", max_requests_per_minute=per_minute)
        logged: dict[str, float] = {}
        with Mirror(config) as mirror:
            if outage:
                cw.emulator.faults.outage = True
            for i in range(exchanges):
                contact = f"55119400{i % contacts:05d}"
                question, answer = f"q{i}", f"a{i}"
                mirror.log_exchange(contact, question, answer)
                logged[question] = logged[answer] = time.time()
                if rate:
                    time.sleep(1 / rate)
            recovered = time.time()
            if outage:
                time.sleep(outage)
                cw.emulator.faults.outage = False
                recovered = time.time()
            start = time.time()
            drained = mirror.flush(timeout)
            drain = time.time() - (recovered if outage else start)
            stats = mirror.stats()
        statuses = Counter(status for _, _, status in cw.emulator.request_log)
    latencies = [arrivals.first[text] - at for text, at in logged.items()
                 if text in arrivals.first]
    return {
        "messages": len(logged), "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99), "max": max(latencies, default=float("nan")),
        "drain": drain, "drained": float(drained),
        "lost": sum(1 for text in logged if text not in arrivals.first),
        "doubled": sum(n - 1 for n in arrivals.count.values() if n > 1),
        "requests": float(sum(statuses.values())), "429": float(statuses.get(429, 0)),
        "retried": float(stats.get("retried", 0)),
    }


SCENARIOS = {
    "a": ("healthy, 20 ms", lambda: run(Faults(latency=0.02, seed=1), exchanges=100,
                                        contacts=10, per_minute=2400, rate=10)),
    "b": ("30% 500 + 10% dropped after commit",
          lambda: run(Faults(error_rate=0.3, drop_after_commit_rate=0.1, seed=7),
                      exchanges=100, contacts=10, per_minute=2400, rate=10)),
    "c": ("60 s outage, 1000 queued / 100 contacts",
          lambda: run(Faults(seed=3), exchanges=500, contacts=100, per_minute=2400,
                      outage=60.0)),
    "d": ("rack-attack 3000/min, no own pace",
          lambda: run(Faults(rate_limit_per_minute=3000, seed=5), exchanges=2000,
                      contacts=100, per_minute=0)),
}


def main() -> None:
    chosen = sys.argv[1:] or list(SCENARIOS)
    print(f"{'scenario':<42} {'msgs':>5} {'p50 s':>7} {'p99 s':>7} {'max s':>7} "
          f"{'drain s':>8} {'lost':>5} {'dbl':>4} {'reqs':>6} {'429':>5}")
    for name in chosen:
        label, bench = SCENARIOS[name]
        r = bench()
        print(f"{name}) {label:<39} {r['messages']:>5.0f} {r['p50']:>7.3f} {r['p99']:>7.3f} "
              f"{r['max']:>7.3f} {r['drain']:>8.1f} {r['lost']:>5.0f} {r['doubled']:>4.0f} "
              f"{r['requests']:>6.0f} {r['429']:>5.0f}", flush=True)


if __name__ == "__main__":
    main()
