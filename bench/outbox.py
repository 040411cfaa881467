"""Outbox benchmarks, side by side in one run (issue: durable outbox).

    python bench/outbox.py            # all three
    python bench/outbox.py host|drain|memory

host    host-path cost of log_to_chatwoot (p50/p99) against a naive synchronous client making
        the same Chatwoot calls, both against the emulator at 20 ms latency.
drain   messages/s delivered from a pre-filled outbox to a fast local HTTP sink (own process).
memory  resident memory of a process holding a 100 000-message backlog while Chatwoot is down.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

import chatwoot_mirror
from chatwoot_mirror import Config, Mirror, log_to_chatwoot

HERE = Path(__file__).resolve().parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class EmulatorProcess:
    """The emulator in its own process, as a real Chatwoot would be: its CPU does not
    compete with the measured host process for the GIL."""

    def __init__(self, tmp: str, latency: float) -> None:
        port_file = Path(tmp) / "emulator.port"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatwoot_mirror.testing", "--port", "0",
             "--inbox-identifier", "benchinbox", "--bot-token", "benchbot",
             "--latency", str(latency), "--port-file", str(port_file)],
            stdout=subprocess.DEVNULL,
        )
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port_file.read_text()}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def fixed_work() -> int:
    """A fixed pure-Python computation of about the host path's size: the machine's own
    scheduling jitter shows in its tail, measured in the same loop as ours."""
    total = 0
    for j in range(1500):
        total += j * j
    return total


def bench_host(exchanges: int = 1000, contacts: int = 20) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        emulator = EmulatorProcess(tmp, latency=0.020)
        try:
            # naive: the calls the old script makes inline, in steady state
            session = requests.Session()
            source = "wa-5511900000000"
            base = f"{emulator.url}/public/api/v1/inboxes/benchinbox"
            session.post(f"{base}/contacts", json={"source_id": source}, timeout=10)
            conv = session.post(f"{base}/contacts/{source}/conversations", json={},
                                timeout=10).json()
            app = f"{emulator.url}/api/v1/accounts/1/conversations/{conv['id']}/messages"
            headers = {"api_access_token": "benchbot"}
            naive = []
            for i in range(100):
                t0 = time.perf_counter()
                session.post(f"{base}/contacts/{source}/conversations/{conv['id']}/messages",
                             json={"content": f"q{i}"}, timeout=10)
                session.post(app, json={"content": f"a{i}", "message_type": "outgoing"},
                             headers=headers, timeout=10)
                naive.append(time.perf_counter() - t0)

            env = {"CHATWOOT_URL": emulator.url, "CHATWOOT_INBOX_ID": "benchinbox",
                   "CHATWOOT_ACCOUNT_ID": "1", "CHATWOOT_BOT_TOKEN": "benchbot",
                   "CHATWOOT_MIRROR_DB": f"{tmp}/m.db"}
            os.environ.update(env)
            chatwoot_mirror.set_default_mirror(None)
            log_to_chatwoot("5511900000001", "warm", "up")  # builds the process-wide Mirror
            ours, control, burst = [], [], []
            for i in range(exchanges):
                phone = f"55119000{i % contacts:05d}"
                t0 = time.perf_counter()
                log_to_chatwoot(phone, f"pergunta {i}", f"resposta {i}", sender_name="Cliente")
                ours.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                fixed_work()
                control.append(time.perf_counter() - t0)
                time.sleep(0.02)  # a steady 50 exchanges/s, which 4 workers keep up with
            for i in range(exchanges):  # then a burst, back to back
                t0 = time.perf_counter()
                log_to_chatwoot(f"55119001{i % contacts:04d}", f"p {i}", f"r {i}")
                burst.append(time.perf_counter() - t0)
            mirror = chatwoot_mirror.get_default_mirror()
            drained = mirror.flush(300)
            mirror.close()
            for key in env:
                os.environ.pop(key, None)
        finally:
            emulator.stop()
    with tempfile.TemporaryDirectory() as tmp:  # the store alone: no delivery threads
        mirror = Mirror(Config(url="http://127.0.0.1:9", inbox_identifier="x", account_id=1,
                               bot_token="b", db_path=f"{tmp}/m.db"), start=False)
        alone = []
        for i in range(exchanges):
            t0 = time.perf_counter()
            mirror.log_exchange(f"55119002{i % contacts:04d}", f"p {i}", f"r {i}")
            alone.append(time.perf_counter() - t0)
        mirror.close(timeout=0)
    return {
        "alone_p50_ms": percentile(alone, 0.5) * 1000,
        "alone_p99_ms": percentile(alone, 0.99) * 1000,
        "naive_p50_ms": percentile(naive, 0.5) * 1000,
        "naive_p99_ms": percentile(naive, 0.99) * 1000,
        "ours_p50_ms": percentile(ours, 0.5) * 1000,
        "ours_p99_ms": percentile(ours, 0.99) * 1000,
        "control_p50_ms": percentile(control, 0.5) * 1000,
        "control_p99_ms": percentile(control, 0.99) * 1000,
        "burst_p50_ms": percentile(burst, 0.5) * 1000,
        "burst_p99_ms": percentile(burst, 0.99) * 1000,
        "ratio_p50": statistics.median(naive) / statistics.median(ours),
        "ratio_p99": percentile(naive, 0.99) / percentile(ours, 0.99),
        "drained": float(drained),
    }


def bench_drain(messages: int = 6000, contacts: int = 100, workers: int = 4) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        sink = subprocess.Popen([sys.executable, str(HERE / "sink.py"), str(port_file)])
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.01)
            url = f"http://127.0.0.1:{port_file.read_text()}"
            config = Config(url=url, inbox_identifier="sinktoken", account_id=1,
                            bot_token="sink", db_path=f"{tmp}/m.db", workers=workers,
                            max_requests_per_minute=0)
            mirror = Mirror(config, start=False)
            for i in range(messages // 2):
                mirror.log_exchange(f"55119100{i % contacts:05d}", f"q{i}", f"a{i}")
            t0 = time.perf_counter()
            mirror.start()
            ok = mirror.flush(600)
            elapsed = time.perf_counter() - t0
            delivered = mirror.stats()["delivered"]
            mirror.close()
        finally:
            sink.terminate()
            sink.wait()
    return {"messages": messages, "contacts": contacts, "workers": workers,
            "seconds": elapsed, "per_second": delivered / elapsed, "complete": float(ok)}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_memory(messages: int = 100_000, contacts: int = 1000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        # Chatwoot is down (nothing listens on port 9): the backlog only grows.
        config = Config(url="http://127.0.0.1:9", inbox_identifier="down", account_id=1,
                        bot_token="x", db_path=f"{tmp}/m.db", connect_timeout=0.2)
        mirror = Mirror(config)
        before = rss_mb()
        t0 = time.perf_counter()
        for i in range(messages // 2):
            mirror.log_exchange(f"55119200{i % contacts:05d}", f"pergunta {i}",
                                f"resposta {i} " + "x" * 80)
        enqueue_s = time.perf_counter() - t0
        time.sleep(2)  # let the workers fail, back off and retry a while
        stats = mirror.stats()
        after = rss_mb()
        mirror.close(timeout=0)
    return {"messages": messages, "queued": stats["queued"], "rss_before_mb": before,
            "rss_after_mb": after, "enqueue_per_s": messages / enqueue_s}


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    if which in ("host", "all"):
        r = bench_host()
        print("\nhost path per exchange (Chatwoot emulator at 20 ms latency)")
        print(f"  naive synchronous client: p50 {r['naive_p50_ms']:.1f} ms  "
              f"p99 {r['naive_p99_ms']:.1f} ms")
        print(f"  log_to_chatwoot:          p50 {r['ours_p50_ms']:.3f} ms  "
              f"p99 {r['ours_p99_ms']:.3f} ms   (steady 50 exchanges/s, workers draining)")
        print(f"  fixed-work control:       p50 {r['control_p50_ms']:.3f} ms  "
              f"p99 {r['control_p99_ms']:.3f} ms   (same loop: this machine's jitter)")
        print(f"  log_to_chatwoot, burst:   p50 {r['burst_p50_ms']:.3f} ms  "
              f"p99 {r['burst_p99_ms']:.3f} ms   (back to back)")
        print(f"  log_to_chatwoot, store only: p50 {r['alone_p50_ms']:.3f} ms  "
              f"p99 {r['alone_p99_ms']:.3f} ms   (no delivery threads running)")
        print(f"  ratio: {r['ratio_p50']:.0f}x (p50), {r['ratio_p99']:.0f}x (p99) less "
              f"blocking; backlog drained: {bool(r['drained'])}")
    if which in ("drain", "all"):
        r = bench_drain()
        print(f"\ndrain to a fast local sink: {r['messages']} messages, {r['contacts']} contacts,"
              f" {r['workers']} workers")
        print(f"  {r['per_second']:.0f} messages/s ({r['seconds']:.1f} s)")
    if which in ("memory", "all"):
        r = bench_memory()
        print(f"\nmemory with a {r['messages']} message backlog (Chatwoot down)")
        print(f"  RSS {r['rss_before_mb']:.1f} MB before, {r['rss_after_mb']:.1f} MB with "
              f"{r['queued']} queued; enqueue rate {r['enqueue_per_s']:.0f} messages/s")


if __name__ == "__main__":
    main()
