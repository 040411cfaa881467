"""Several hosts on one Redis (issue #15): separate processes sharing one store, as
gunicorn on two VMs or containers behind a load balancer would.

Each test starts its hosts as real processes (tests/mirror_child.py or a short script) on
a real redis-server the tests start themselves (conftest.RedisServer)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import RedisServer, eventually, need_redis
from test_outbox import assert_each_once_in_order, by_conversation, child_env, config

from chatwoot_mirror import Mirror
from chatwoot_mirror.testing import FakeChatwoot, Faults

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "mirror_child.py")


def host(cw: FakeChatwoot, store: str, contacts: list[str], exchanges: int, tag: str,
         mode: str = "close", **extra: str) -> subprocess.Popen:
    env = child_env(cw, "unused.db", CHATWOOT_MIRROR_STORE=store, **extra)
    return subprocess.Popen([sys.executable, CHILD, ",".join(contacts), str(exchanges), tag,
                             mode], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_three_hosts_with_a_first_message_each_make_one_conversation(redis_url):
    """Resolution of a new contact is serialised across hosts by the store's lock."""
    contact = "5511987650001"
    with FakeChatwoot(faults=Faults(latency=0.02)) as cw:
        hosts = [host(cw, redis_url, [contact], 2, tag) for tag in ("h1", "h2", "h3")]
        for process in hosts:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err.decode()
        creates = [r for r in cw.requests if r[0] == "POST" and r[1].endswith("/conversations")]
        assert len(creates) == 1
        [sequence] = by_conversation(cw).values()
        for tag in ("h1", "h2", "h3"):  # each host's messages once, in its own order
            assert [m for m in sequence if m.startswith(tag)] == [
                f"{tag} q0 {contact}", f"{tag} a0 {contact}",
                f"{tag} q1 {contact}", f"{tag} a1 {contact}"]


def test_a_host_killed_holding_claims_is_finished_by_another_exactly_once(redis_url, tmp_path):
    contacts = ["5511987650001", "5511987650002"]
    with FakeChatwoot(faults=Faults(latency=0.3)) as cw:
        doomed = host(cw, redis_url, contacts, 3, "k", "hang", CHATWOOT_CLAIM_TTL_SECONDS="1")
        assert doomed.stdout.readline().strip() == b"queued"
        assert eventually(lambda: len([r for r in cw.requests
                                       if r[1].endswith("/messages")]) >= 2, 30)
        os.kill(doomed.pid, signal.SIGKILL)  # mid-delivery: a request is in the air
        doomed.wait(10)
        assert len(cw.messages()) < 12
        cw.faults.latency = 0.0
        survivor = config(cw, str(tmp_path / "unused.db"), store_url=redis_url,
                          claim_ttl_seconds=1)
        with Mirror(survivor) as mirror:
            assert mirror.flush(30)
        assert_each_once_in_order(cw, contacts, 3, tag="k")


PAUSE = """
import sys
from chatwoot_mirror import Config, Mirror
mirror = Mirror(Config.from_env(dotenv=False), start=False)
print(mirror.handoff(sys.argv[1], "user_request"), flush=True)
mirror.close(timeout=0)
"""


def test_a_pause_taken_on_one_host_is_what_another_host_answers_at_once(redis_url, tmp_path):
    contact = "5511987650001"
    with FakeChatwoot() as cw:
        here = Mirror(config(cw, str(tmp_path / "unused.db"), store_url=redis_url),
                      start=False)
        try:
            assert not here.is_paused(contact)
            other = subprocess.run([sys.executable, "-c", PAUSE, contact], timeout=60,
                                   env=child_env(cw, "unused.db",
                                                 CHATWOOT_MIRROR_STORE=redis_url),
                                   capture_output=True)
            assert other.stdout.strip() == b"True", other.stderr.decode()
            assert here.is_paused(contact)  # no cache, no delay: the shared record
            assert not here.handoff(contact)  # already with humans, wherever decided
        finally:
            here.close(timeout=0)


def test_redis_restarted_mid_drain_with_persistence_loses_and_doubles_nothing(tmp_path):
    need_redis()
    server = RedisServer(tmp_path / "redis", appendonly=True)
    contacts = ["5511987650001", "5511987650002", "5511987650003"]
    try:
        with FakeChatwoot(faults=Faults(latency=0.02)) as cw:
            settings = config(cw, str(tmp_path / "unused.db"), store_url=server.url,
                              claim_ttl_seconds=2)
            with Mirror(settings) as mirror:
                for i in range(8):
                    for contact in contacts:
                        assert mirror.log_exchange(contact, f"t q{i} {contact}",
                                                   f"t a{i} {contact}")
                assert eventually(lambda: len(cw.messages()) >= 6, 30)
                server.stop()  # Redis goes away mid-drain (SIGTERM: its AOF is on disk)
                for i in range(8, 10):  # kept by the local spill while Redis is down
                    for contact in contacts:
                        assert mirror.log_exchange(contact, f"t q{i} {contact}",
                                                   f"t a{i} {contact}")
                assert mirror.stats()["spilled"] >= 12  # and the ids map's writes
                server.start()  # same folder, same port: the append-only file again
                assert mirror.flush(60)
                assert mirror.stats()["spilled"] == 0
            assert_each_once_in_order(cw, contacts, 10, tag="t")
    finally:
        server.stop()


def test_doctor_reads_redis_persistence(redis_server, redis_url, tmp_path):
    from chatwoot_mirror.doctor import _store

    settings = config(_Dummy(), str(tmp_path / "unused.db"), store_url=redis_url, bot=False)
    checks = {c.name: c for c in _store(settings)}
    assert checks["store"].ok and checks["store"].detail.startswith("redis://127.0.0.1:")
    assert "appendonly yes" in checks["durability"].detail  # the test server has none
    durable = RedisServer(tmp_path / "aof", appendonly=True)
    try:
        settings = config(_Dummy(), str(tmp_path / "unused.db"), store_url=durable.url,
                          bot=False)
        assert "durability" not in {c.name for c in _store(settings)}
    finally:
        durable.stop()


class _Dummy:
    """Settings for a Chatwoot nobody calls (doctor's store check reads only the store)."""

    url, inbox_identifier, account_id, bot_token = "https://chat.example.com", "abc", 1, "b"



def test_three_hosts_share_one_pace_counted_in_requests(redis_url):
    """CHATWOOT_MAX_REQUESTS_PER_MINUTE=600 (10 a second, bursts of 120) is the budget
    of all hosts together: in any 6 s, Chatwoot sees at most 120 + 60 requests of them.
    Each host alone would send its ~83 requests at once (its own burst covers them)."""
    contacts = ["5511987650001", "5511987650002", "5511987650003"]
    with FakeChatwoot() as cw:
        hosts = [host(cw, redis_url, [contact], 40, tag,
                      CHATWOOT_MAX_REQUESTS_PER_MINUTE="600")
                 for contact, tag in zip(contacts, ("h1", "h2", "h3"), strict=True)]
        assert eventually(lambda: len(cw.requests) > 0, 120)
        started = time.monotonic()
        assert eventually(lambda: time.monotonic() - started >= 6.0, 30)
        within = len(cw.requests)
        for process in hosts:
            _, err = process.communicate(timeout=240)
            assert process.returncode == 0, err.decode()
        total = len(cw.requests)
        assert total >= 240  # every message, and each new contact's resolution, went
        assert within <= 120 + 60 + 3, (within, total)  # 3: requests in the air at 6 s
        assert len(cw.messages()) == 240
