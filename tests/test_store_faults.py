"""The shared store under faults (issue #28): Redis unreachable, killed and restarted,
silent, and the local spill unwritable. Each test runs real ``redis-server`` processes
(conftest.RedisServer) or a real socket server; nothing here mocks Redis.

What each checks is what the host and Chatwoot see: the host's calls return ``True``
(never raise), and every exchange reaches Chatwoot exactly once, in order per contact."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import RedisServer, eventually, free_port, need_redis
from test_outbox import assert_each_once_in_order, config

from chatwoot_mirror import Mirror
from chatwoot_mirror.errors import ConfigError
from chatwoot_mirror.message_ids import Located, MessageIds
from chatwoot_mirror.store import open_store
from chatwoot_mirror.testing import FakeChatwoot, Faults

CONTACTS = ["5511987650001", "5511987650002", "5511987650003"]


def log_round(mirror: Mirror, first: int, last: int, tag: str = "t") -> list[bool]:
    results = []
    for i in range(first, last):
        for contact in CONTACTS:
            results.append(mirror.log_exchange(contact, f"{tag} q{i} {contact}",
                                               f"{tag} a{i} {contact}"))
    return results


def test_redis_unreachable_at_start_keeps_every_exchange_until_it_comes(tmp_path):
    need_redis()
    server = RedisServer(tmp_path / "redis", start=False)  # its port: nobody listens yet
    try:
        with FakeChatwoot() as cw:
            settings = config(cw, str(tmp_path / "unused.db"), store_url=server.url)
            with Mirror(settings) as mirror:  # starts although Redis does not answer
                assert all(log_round(mirror, 0, 4))
                stats = mirror.stats()
                assert stats["spilled"] >= 24 and stats["queued"] is None
                assert "unavailable" in stats["store_error"]
                assert not mirror.flush(0.5)  # honest: nothing is delivered yet
                assert cw.messages() == []
                server.start()
                assert mirror.flush(120)
                assert mirror.stats()["spilled"] == 0
            assert_each_once_in_order(cw, CONTACTS, 4)
    finally:
        server.stop()


def test_redis_killed_mid_burst_and_back_2s_later_loses_and_doubles_nothing(tmp_path):
    """SIGKILL mid-burst and mid-drain (appendfsync always keeps what Redis took); the
    host keeps writing through the outage and flush() waits it out within its timeout."""
    need_redis()
    server = RedisServer(tmp_path / "redis", appendonly=True)
    results: list[bool] = []
    try:
        with FakeChatwoot(faults=Faults(latency=0.01)) as cw:
            settings = config(cw, str(tmp_path / "unused.db"), store_url=server.url,
                              claim_ttl_seconds=2)
            with Mirror(settings) as mirror:
                results += log_round(mirror, 0, 5)
                assert eventually(lambda: len(cw.messages()) >= 4, 60)
                writer = threading.Thread(target=lambda: results.extend(
                    log_round(mirror, 5, 25)))
                writer.start()
                server.kill()
                restart = threading.Timer(2.0, server.start)
                restart.start()
                writer.join(120)
                # started while Redis is (most likely) still away: waits it out
                assert mirror.flush(120)
                restart.join(30)
                assert mirror.stats()["spilled"] == 0
            assert results and all(results)  # every call took its exchange, none raised
            assert_each_once_in_order(cw, CONTACTS, 25)
    finally:
        server.stop()


def test_flush_rides_out_a_redis_restart_within_its_timeout(tmp_path):
    need_redis()
    server = RedisServer(tmp_path / "redis", appendonly=True)
    try:
        with FakeChatwoot(faults=Faults(latency=0.02)) as cw:
            settings = config(cw, str(tmp_path / "unused.db"), store_url=server.url,
                              claim_ttl_seconds=2)
            with Mirror(settings) as mirror:
                assert all(log_round(mirror, 0, 10))
                assert eventually(lambda: len(cw.messages()) >= 2, 60)
                server.kill()
                restart = threading.Timer(2.0, server.start)
                restart.start()
                # on the landed main this returned False at the first store error (1.0 s)
                assert mirror.flush(120)
                restart.join(30)
            assert_each_once_in_order(cw, CONTACTS, 10)
    finally:
        server.stop()


class SilentServer:
    """Accepts connections, reads whatever comes, and never answers (a hung Redis, or a
    firewall that swallows packets after the handshake)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.lock = threading.Lock()
        self.clients: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(client)
            threading.Thread(target=self._read, args=(client,), daemon=True).start()

    def _read(self, client: socket.socket) -> None:
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.received += data

    def writes(self) -> int:
        """How many outbox scripts reached it (enqueue and claim are EVALSHA)."""
        with self.lock:
            return bytes(self.received).upper().count(b"EVALSHA")

    def close(self) -> None:
        self.sock.close()
        for client in self.clients:
            client.close()


def test_a_silent_redis_costs_the_host_its_timeout_once_then_nothing(tmp_path):
    silent = SilentServer()
    try:
        with FakeChatwoot() as cw:
            settings = config(cw, str(tmp_path / "unused.db"),
                              store_url=f"redis://127.0.0.1:{silent.port}/0?socket_timeout=0.3")
            mirror = Mirror(settings)
            try:
                assert mirror.log_exchange(CONTACTS[0], "first", "first")
                assert eventually(lambda: mirror.store.spilling(), 30)
                before = silent.writes()
                assert all(log_round(mirror, 0, 20))  # 60 exchanges
                # none of them went to the silent server: the circuit skips it
                assert silent.writes() == before
                assert mirror.stats()["spilled"] >= 122
            finally:
                started = time.monotonic()
                mirror.close(timeout=1.0)  # honest and bounded: the store never answered
                closing = time.monotonic() - started
            assert closing < 60  # bounded (generous: the machine may be loaded)
    finally:
        silent.close()


def test_the_id_map_written_while_redis_is_away_still_finds_its_messages(tmp_path):
    """A bot reply's two halves (the provider's id from the send, Chatwoot's id from the
    post) recorded while Redis is down: after its return, a receipt and a quote find it."""
    need_redis()
    server = RedisServer(tmp_path / "redis", appendonly=True)
    store = open_store(server.url, spill=str(tmp_path / "spill.db"))
    try:
        ids = MessageIds(store, ttl=3600)
        ids.posted("k-before", Located("wa-1", 7, 70), provider_id="wamid.before")
        server.kill()
        ids.sent("wamid.bot", key="k-bot")  # sent first...
        ids.posted("k-bot", Located("wa-1", 7, 71))  # ...then posted, both while down
        ids.posted("k-in", Located("wa-1", 7, 72), provider_id="wamid.in")
        assert store.spilled()[0] > 0
        server.start()
        assert eventually(lambda: store.move_spilled() == 0 and store.spilled()[0] == 0, 60)
        # read from Redis itself, through a store with no spill
        plain = open_store(server.url)
        try:
            again = MessageIds(plain, ttl=3600)
            assert again.find("wamid.bot") == Located("wa-1", 7, 71)
            assert again.provider_id(71) == "wamid.bot"
            assert again.find("wamid.in") == Located("wa-1", 7, 72)
            assert again.provider_id(72) == "wamid.in"
            assert again.find("wamid.before") == Located("wa-1", 7, 70)
            assert again.known("wamid.bot")
        finally:
            plain.close()
    finally:
        store.close()
        server.stop()


def test_a_queued_bot_turn_is_not_spilled_the_bot_answers_at_once(tmp_path):
    """While writes go to the spill, a turn queued there would wait for Redis: the
    mirror tells the caller to ask its bot now instead (as when nothing can be queued)."""
    port = free_port()
    with FakeChatwoot() as cw:
        settings = config(cw, str(tmp_path / "unused.db"),
                          store_url=f"redis://127.0.0.1:{port}/0")
        with Mirror(settings, start=False) as mirror:
            mirror.log_exchange(CONTACTS[0], "oi", "ola")  # meets Redis away: the circuit opens
            assert mirror.store.spilling()
            received = mirror.receive(CONTACTS[0], "tudo bem?", message_id="wamid.1",
                                      turn={"event": {}}, channel="uazapi")
            assert received.queued and not received.turn_queued
            assert received.bot_should_answer


CHILD = """
import logging, os, resource, sys
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
from chatwoot_mirror import Config, Mirror
mirror = Mirror(Config.from_env(dotenv=False), start=False)
mirror.identify("5511987650001")  # what it imports on first use is read before any setuid
if sys.argv[1] == "readonly" and os.getuid() == 0:
    os.setuid(65534)  # root writes anywhere: become nobody so the folder's mode counts
if sys.argv[1] == "full":
    resource.setrlimit(resource.RLIMIT_FSIZE, (600_000, 600_000))
results = [mirror.log_exchange("5511987650001", f"q{i} " + "x" * 2000, f"a{i}")
           for i in range(int(sys.argv[2]))]
print("".join("T" if ok else "F" for ok in results), flush=True)
mirror.close(timeout=0)
"""


def spill_child(tmp_path, mode: str, spill: str, count: int) -> subprocess.CompletedProcess:
    port = free_port()  # nobody listens: every write meets Redis away
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATWOOT_")}
    env.update(CHATWOOT_URL="http://127.0.0.1:9", CHATWOOT_INBOX_ID="inbox",
               CHATWOOT_MIRROR_STORE=f"redis://127.0.0.1:{port}/0",
               CHATWOOT_MIRROR_SPILL=spill)
    return subprocess.run([sys.executable, "-c", CHILD, mode, str(count)], env=env,
                          capture_output=True, text=True, timeout=120, cwd="/")


def test_a_read_only_spill_folder_gives_false_with_one_line_saying_what_was_lost(tmp_path):
    import tempfile

    parent = tempfile.mkdtemp()  # under /tmp: reachable by the child once it is nobody
    os.chmod(parent, 0o755)
    folder = os.path.join(parent, "ro")
    os.mkdir(folder, 0o555)
    os.chmod(folder, 0o555)
    try:
        done = spill_child(tmp_path, "readonly", os.path.join(folder, "spill.db"), 3)
    finally:
        os.chmod(folder, 0o755)
        import shutil

        shutil.rmtree(parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "FFF"
    lost = [line for line in done.stderr.splitlines() if "lost" in line]
    assert len(lost) == 3, done.stderr  # one line per exchange, nothing else
    assert "the store is unavailable" in lost[0] and "could not be written" in lost[0]
    assert "Traceback" not in done.stderr


def test_a_full_disk_fills_the_spill_then_gives_false_never_raises(tmp_path):
    done = spill_child(tmp_path, "full", str(tmp_path / "spill.db"), 400)
    assert done.returncode == 0, done.stderr
    flags = done.stdout.strip()
    assert flags.startswith("T") and flags.endswith("F"), flags  # taken until full
    assert "Traceback" not in done.stderr
    lost = [line for line in done.stderr.splitlines() if "could not be written" in line]
    assert lost and "the store is unavailable" in lost[0], done.stderr
    assert flags.count("T") >= 5  # the spill held what fitted


def test_a_wrong_redis_password_fails_at_start_naming_the_variable_not_the_password(tmp_path):
    need_redis()
    server = RedisServer(tmp_path / "redis", password="right-password-123")
    try:
        url = f"redis://:wrong-password-456@127.0.0.1:{server.port}/0"
        with pytest.raises(ConfigError) as caught:
            open_store(url, spill=str(tmp_path / "spill.db"))
        assert caught.value.variable == "CHATWOOT_MIRROR_STORE"
        assert "password" in str(caught.value)
        assert "wrong-password-456" not in str(caught.value)
        assert "right-password-123" not in str(caught.value)
        from chatwoot_mirror.doctor import _store

        with FakeChatwoot() as cw:
            checks = {c.name: c for c in _store(config(cw, str(tmp_path / "x.db"),
                                                       store_url=url))}
        assert not checks["store"].ok
        assert "wrong-password-456" not in checks["store"].detail + (checks["store"].fix or "")
        right = open_store(f"redis://:right-password-123@127.0.0.1:{server.port}/0")
        right.close()
    finally:
        server.stop()


def test_redis_restarted_without_persistence_is_said_loudly_never_pretended(tmp_path, caplog):
    need_redis()
    server = RedisServer(tmp_path / "redis")  # no AOF, no snapshots: a restart is empty
    try:
        with FakeChatwoot() as cw:
            cw.faults.outage = True  # the rows stay queued in Redis
            settings = config(cw, str(tmp_path / "unused.db"), store_url=server.url)
            with Mirror(settings) as mirror:
                assert all(log_round(mirror, 0, 2))
                assert mirror.stats()["queued"] == 12
                server.kill()
                server.start()  # empty
                assert eventually(lambda: any("redis lost its data" in r.getMessage()
                                              for r in caplog.records), 60)
                assert mirror.stats()["queued"] == 0  # honest: gone, not pretended queued
                mirror.close(timeout=0)
            from chatwoot_mirror.doctor import _store

            checks = {c.name: c for c in _store(settings)}
            assert not checks["data loss"].ok
            assert "Redis lost its data at" in checks["data loss"].detail
            assert "appendonly" in checks["durability"].detail
    finally:
        server.stop()


def test_doctor_fails_on_an_evicting_redis_and_reports_replicas_and_the_spill(tmp_path):
    need_redis()
    from chatwoot_mirror.doctor import _store

    evicting = RedisServer(tmp_path / "lru", extra=("--maxmemory-policy", "allkeys-lru"))
    safe = RedisServer(tmp_path / "safe", appendonly=True)
    try:
        with FakeChatwoot() as cw:
            def checks(url: str, spill: str) -> dict:
                settings = config(cw, str(tmp_path / "x.db"), store_url=url,
                                  spill_path=spill)
                return {c.name: c for c in _store(settings)}

            found = checks(evicting.url, str(tmp_path / "spill.db"))
            assert not found["eviction"].ok
            assert "allkeys-lru" in found["eviction"].detail
            assert "noeviction" in found["eviction"].fix
            assert found["spill"].ok and found["spill"].detail.endswith("empty")
            found = checks(safe.url, str(tmp_path / "spill.db"))
            assert "eviction" not in found and "durability" not in found
            assert "0 connected replica(s)" in found["replicas"].detail
            assert found["replicas"].warning
            (tmp_path / "a-file").write_text("")
            found = checks(safe.url, str(tmp_path / "a-file" / "spill.db"))
            assert not found["spill"].ok and "CHATWOOT_MIRROR_SPILL" in found["spill"].fix
    finally:
        evicting.stop()
        safe.stop()
