"""The Redis store beside SQLite, in one run (issue #15: several hosts, one truth).

    python bench/redis_store.py            # host, drain, memory
    python bench/redis_store.py host|spill|drain|memory

host    p50/p99 of log_exchange on the host path (store only, no delivery threads),
        SQLite file vs Redis on loopback vs Redis down (the local spill), alternated.
spill   1000 exchanges spilled while Redis is away, then Redis starts: the time until the
        spill is empty (moved into Redis).
drain   messages/s delivered from a pre-filled outbox to the fast local sink by 1, 2 and 4
        processes (4 workers each) sharing the store: SQLite file vs Redis.
memory  Redis memory for a 100 000-message backlog (over 1000 and over 10 contacts), per
        message beyond its payload.

Needs Debian's redis-server (it starts its own on a free port, appendonly yes,
appendfsync everysec, as the README advises) and the redis package.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.store import open_store

HERE = Path(__file__).resolve().parent

CHILD = """
import sys
import time
from chatwoot_mirror import Config, Mirror
mirror = Mirror(Config.from_env(dotenv=False), start=False)
print("ready", flush=True)
sys.stdin.readline()
mirror.start()
# a glance at the queue now and then (a look after every message would cost the store as
# much as a delivery: it is the harness, not the mirror)
while mirror.store.outbox_counts(0).queued:
    time.sleep(0.2)
mirror.close(timeout=5)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Redis:
    def __init__(self, folder: str, port: int | None = None) -> None:
        if port is None:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        self.port = port
        binary = shutil.which("redis-server")
        assert binary, "apt-get install redis-server"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", folder,
             "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis.from_url(self.url)
        for _ in range(500):
            try:
                self.client.ping()
                break
            except redis.RedisError:
                time.sleep(0.01)

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_host(redis_url: str, tmp: str, calls: int = 3000,
               rounds: int = 2) -> dict[str, list[float]]:
    """``redis down``: nobody listens on the port; the first call meets the refusal and
    opens the circuit (not counted), the others go to the local spill."""
    times: dict[str, list[float]] = {"sqlite": [], "redis up": [], "redis down": []}
    for round_ in range(rounds):
        for name in times:
            store = {"sqlite": f"sqlite:///{tmp}/host{round_}.db",
                     "redis up": f"{redis_url}?prefix=host{round_}:",
                     "redis down": f"redis://127.0.0.1:{free_port()}/0"}[name]
            mirror = Mirror(Config(url="http://127.0.0.1:9", inbox_identifier="x",
                                   account_id=1, bot_token="b", store_url=store,
                                   spill_path=f"{tmp}/host-spill{round_}-{name[-2:]}.db"),
                            start=False)
            mirror.log_exchange("5511900000000", "first", "first")
            for i in range(calls):
                t0 = time.perf_counter()
                ok = mirror.log_exchange(f"55119002{i % 200:04d}", f"p {i}", f"r {i}")
                times[name].append(time.perf_counter() - t0)
                assert ok
            mirror.close(timeout=0)
    return times


def bench_spill_drain(tmp: str, exchanges: int = 1000) -> dict[str, float]:
    """``exchanges`` logged while Redis is away (into the spill), then Redis starts: the
    time until the spill is empty, moving as the delivery workers' mover does."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    mirror = Mirror(Config(url="http://127.0.0.1:9", inbox_identifier="x", account_id=1,
                           bot_token="b", store_url=url, spill_path=f"{tmp}/drain-spill.db"),
                    start=False)
    for i in range(exchanges):
        assert mirror.log_exchange(f"55119300{i % 100:04d}", f"p {i}", f"r {i}")
    rows, _ = mirror.store.spilled()
    folder = Path(tmp) / "spill-redis"
    folder.mkdir()
    server = Redis(str(folder), port=port)
    t0 = time.perf_counter()
    first = None
    try:
        while mirror.store.spilled()[0]:
            if not mirror.store.move_spilled(200):
                time.sleep(0.01)  # the circuit's next probe
            elif first is None:
                first = time.perf_counter()
        elapsed = time.perf_counter() - t0
        assert first is not None
        moving = time.perf_counter() - first
        queued = mirror.store.outbox_counts(time.time()).queued
    finally:
        mirror.close(timeout=0)
        server.stop()
    return {"rows": rows, "seconds": elapsed, "per_second": rows / moving,
            "probe": first - t0, "queued": queued}


def bench_drain(store: str, processes: int, sink_url: str, messages: int = 6000,
                contacts: int = 100) -> float:
    config = Config(url=sink_url, inbox_identifier="sinktoken", account_id=1,
                    bot_token="sink", store_url=store, max_requests_per_minute=0)
    mirror = Mirror(config, start=False)
    for i in range(messages // 2):
        mirror.log_exchange(f"55119100{i % contacts:05d}", f"q{i}", f"a{i}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATWOOT_")}
    env.update(CHATWOOT_MIRROR_SPILL=os.path.join(tempfile.gettempdir(),
                                                  f"bench-spill-{os.getpid()}.db"))
    env.update(CHATWOOT_URL=sink_url, CHATWOOT_INBOX_ID="sinktoken", CHATWOOT_ACCOUNT_ID="1",
               CHATWOOT_BOT_TOKEN="sink", CHATWOOT_MIRROR_STORE=store,
               CHATWOOT_MAX_REQUESTS_PER_MINUTE="0", CHATWOOT_WORKERS="4")
    children = [subprocess.Popen([sys.executable, "-c", CHILD], env=env, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                for _ in range(processes)]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    while mirror.store.outbox_counts(time.time()).queued:
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    for child in children:
        child.wait(60)
    mirror.close(timeout=0)
    return messages / elapsed


def bench_memory(redis_url: str, messages: int = 100_000,
                 contacts: int = 1000) -> dict[str, float]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    before = int(client.info("memory")["used_memory"])
    store_url = f"{redis_url}?prefix=mem:"
    mirror = Mirror(Config(url="http://127.0.0.1:9", inbox_identifier="down", account_id=1,
                           bot_token="x", store_url=store_url), start=False)
    for i in range(messages // 2):
        mirror.log_exchange(f"55119200{i % contacts:05d}", f"pergunta {i}",
                            f"resposta {i} " + "x" * 80)
    mirror.close(timeout=0)
    after = int(client.info("memory")["used_memory"])
    store = open_store(store_url)
    queued = store.outbox_counts(time.time()).queued
    # the payloads' own size, read back through claims (one contact per claim)
    payload = 0
    while rows := store.claim("bench", 600, messages, time.time()):
        payload += sum(len(row.payload.encode()) for row in rows)
    store.close()
    client.close()
    return {"messages": queued, "contacts": contacts,
            "bytes_per_message": (after - before) / queued,
            "payload_per_message": payload / queued,
            "beyond_payload": (after - before - payload) / queued}


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"redis-server on loopback (appendonly yes, appendfsync everysec)")
    with tempfile.TemporaryDirectory() as tmp:
        server = Redis(tmp)
        try:
            if which in ("host", "all"):
                times = bench_host(server.url, tmp)
                print("\nhost path, log_exchange (store only), 2 x 3000 calls alternated")
                for name, values in times.items():
                    print(f"  {name:10s} p50 {percentile(values, 0.5) * 1000:.3f} ms  "
                          f"p99 {percentile(values, 0.99) * 1000:.3f} ms")
            if which in ("spill", "all"):
                r = bench_spill_drain(tmp)
                print(f"\nspill drained into Redis after its return: {r['rows']:.0f} rows "
                      f"(1000 exchanges) in {r['seconds']:.2f} s: the circuit's probe after "
                      f"{r['probe']:.2f} s, then {r['per_second']:.0f} rows/s; "
                      f"{r['queued']:.0f} queued in Redis")
            if which in ("drain", "all"):
                port_file = Path(tmp) / "port"
                sink = subprocess.Popen([sys.executable, str(HERE / "sink.py"),
                                         str(port_file)])
                try:
                    while not port_file.exists() or not port_file.read_text():
                        time.sleep(0.01)
                    sink_url = f"http://127.0.0.1:{port_file.read_text()}"
                    print("\ndrain to the fast local sink, 6000 messages, 100 contacts, "
                          "4 workers per process (messages/s)")
                    for processes in (1, 2, 4):
                        rates = {}
                        for name in ("sqlite", "redis"):
                            store = (f"sqlite:///{tmp}/drain{processes}.db" if name == "sqlite"
                                     else f"{server.url}?prefix=drain{processes}:")
                            rates[name] = bench_drain(store, processes, sink_url)
                        print(f"  {processes} process(es): sqlite {rates['sqlite']:.0f}/s  "
                              f"redis {rates['redis']:.0f}/s")
                finally:
                    sink.terminate()
                    sink.wait()
            if which in ("memory", "all"):
                print()
                for contacts in (1000, 10):  # 100 messages each; 10,000 each
                    r = bench_memory(server.url, contacts=contacts)
                    print(f"Redis memory for a {r['messages']:.0f}-message backlog over "
                          f"{contacts} contacts: {r['bytes_per_message']:.0f} bytes/message,"
                          f" of which payload {r['payload_per_message']:.0f}; "
                          f"{r['beyond_payload']:.0f} beyond it")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
