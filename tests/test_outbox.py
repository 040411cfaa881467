"""The durable outbox against the Chatwoot emulator: nothing lost, nothing doubled, in order."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pytest
from freezegun import freeze_time

from chatwoot_mirror import Config, Mirror, Unavailable
from chatwoot_mirror.outbox import Backoff, decode
from chatwoot_mirror.pacing import Pacer
from chatwoot_mirror.testing import FakeChatwoot, Faults

HERE = Path(__file__).resolve().parent


def config(cw: FakeChatwoot, db_path: str, *, bot: bool = True, **extra) -> Config:
    kwargs = dict(
        url=cw.url, inbox_identifier=cw.inbox_identifier, db_path=db_path,
        retry_base_seconds=0.02, retry_max_seconds=0.2, max_requests_per_minute=0,
        read_timeout=2.0, spill_path=db_path + ".spill",
    )
    if bot:
        kwargs.update(account_id=cw.account_id, bot_token=cw.bot_token)
    kwargs.update(extra)
    return Config(**kwargs)


def by_conversation(cw: FakeChatwoot) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for m in cw.messages():
        out[m["conversation_id"]].append(m["content"])
    return out


def expected_sequence(tag: str, contact: str, exchanges: int, prefix: str = "") -> list[str]:
    seq = []
    for i in range(exchanges):
        seq += [f"{tag} q{i} {contact}", f"{prefix}{tag} a{i} {contact}"]
    return seq


def log_many(mirror: Mirror, contacts: list[str], exchanges: int, tag: str = "t") -> None:
    for i in range(exchanges):
        for c in contacts:
            assert mirror.log_exchange(c, f"{tag} q{i} {c}", f"{tag} a{i} {c}")


def assert_each_once_in_order(cw, contacts, exchanges, tag="t", prefix=""):
    convs = by_conversation(cw)
    assert len(convs) == len(contacts), "exactly one conversation per contact"
    got = sorted(convs.values(), key=lambda seq: seq[0])
    want = sorted(
        (expected_sequence(tag, c, exchanges, prefix) for c in contacts), key=lambda s: s[0]
    )
    assert got == want


CONTACTS = ["5511987650001", "5511987650002", "5511987650003"]


@pytest.fixture
def cw():
    with FakeChatwoot() as chatwoot:
        yield chatwoot


def test_log_returns_while_chatwoot_is_down_and_nothing_is_lost(cw, db_path):
    cw.faults.outage = True
    with Mirror(config(cw, db_path)) as mirror:
        log_many(mirror, CONTACTS, 5)
        assert not mirror.flush(0.3)
        stats = mirror.stats()
        assert stats["queued"] == 30 and stats["delivered"] == 0 and stats["retried"] >= 1
        assert stats["oldest_queued_age"] > 0
        assert cw.messages() == []
        cw.faults.outage = False
        assert mirror.flush(10)
        assert mirror.stats()["queued"] == 0
    assert_each_once_in_order(cw, CONTACTS, 5)


@pytest.mark.parametrize("bot", [True, False], ids=["bot-token-marker", "content-match"])
def test_random_500s_and_answers_lost_after_commit(cw, db_path, bot):
    cw.faults.error_rate = 0.25
    cw.faults.drop_after_commit_rate = 0.25
    cw.emulator.random.seed(7)
    with Mirror(config(cw, db_path, bot=bot)) as mirror:
        log_many(mirror, CONTACTS, 8)
        assert mirror.flush(30)
        stats = mirror.stats()
    statuses = {s for _, _, s in cw.requests}
    assert 500 in statuses and stats["retried"] > 5
    assert_each_once_in_order(cw, CONTACTS, 8, prefix="" if bot else "🤖 ")


def test_repeated_identical_texts_survive_ambiguity_without_bot_token(cw, db_path):
    """Content matching must not mistake an earlier identical message for the lost one."""
    cw.faults.drop_after_commit_rate = 0.4
    cw.emulator.random.seed(3)
    with Mirror(config(cw, db_path, bot=False)) as mirror:
        for _ in range(10):
            mirror.log_incoming("5511987650009", "ok")
        assert mirror.flush(20)
    assert [m["content"] for m in cw.messages()] == ["ok"] * 10


def test_many_exchanges_one_contact_all_workers(cw, db_path):
    with Mirror(config(cw, db_path, workers=8)) as mirror:
        for i in range(40):
            mirror.log_exchange("5511987650001", f"t q{i} 5511987650001",
                                f"t a{i} 5511987650001")
        assert mirror.flush(20)
    assert_each_once_in_order(cw, ["5511987650001"], 40)


def test_provider_message_id_is_mirrored_once(cw, db_path):
    with Mirror(config(cw, db_path)) as mirror:
        assert mirror.log_incoming("5511987650001", "oi", message_id="wamid.A1")
        assert mirror.flush()
        assert mirror.log_incoming("5511987650001", "oi", message_id="wamid.A1")  # redelivery
    with Mirror(config(cw, db_path)) as mirror:  # and after a restart
        assert mirror.log_exchange("5511987650001", "oi", "olá", message_id="wamid.A1")
    assert [m["content"] for m in cw.messages()] == ["oi", "olá"]


def test_permanent_rejection_is_dead_lettered_then_retried(cw, db_path):
    real = cw.bot_token
    cw.emulator.bot.access_token = "rotated"
    with Mirror(config(cw, db_path, bot_token=real)) as mirror:
        assert mirror.log_exchange("5511987650001", "oi", "olá")
        assert mirror.flush(5)
        stats = mirror.stats()
        assert stats["dead_letters"] == 2 and stats["queued"] == 0
        dead = mirror.dead_letters()
        assert {d["contact"] for d in dead} == {"wa-5511987650001"}
        assert all("CHATWOOT_BOT_TOKEN" in d["reason"] for d in dead)
        assert real not in str(dead)
        cw.emulator.bot.access_token = real
        assert mirror.retry_dead() == 2
        assert mirror.flush(5)
        assert mirror.stats()["dead_letters"] == 0
    assert [m["content"] for m in cw.messages()] == ["oi", "olá"]


def test_flood_422_backs_off_that_conversation_only(db_path):
    with FakeChatwoot(flood_limit=4, flood_window=0.5) as cw:
        mirror = Mirror(config(cw, db_path), start=False)
        mirror.workers.backoff = Backoff(0.02, 0.2, flood=0.6)
        mirror.start()
        with mirror:
            log_many(mirror, ["5511987650001"], 4)  # 8 messages into one conversation
            mirror.log_incoming("5511987650002", "t q0 other")
            assert mirror.flush(15)
        flooded = [r for r in cw.requests if r[2] == 422]
        assert flooded, "the emulator's flood limit was hit"
        convs = by_conversation(cw)
        assert sorted(convs.values(), key=len) == [
            ["t q0 other"], expected_sequence("t", "5511987650001", 4)
        ]


def test_429_storm_pauses_every_worker(db_path):
    contacts = [f"55119876500{i:02d}" for i in range(20)]
    with FakeChatwoot() as cw:
        with Mirror(config(cw, db_path)) as mirror:
            # warm up: resolve every contact first, so the storm only hits message posts
            for c in contacts:
                mirror.log_incoming(c, f"warm {c}")
            assert mirror.flush(10)
            start = time.time()
            cw.faults.outages = [(start, start + 1.5)]
            cw.faults.outage_status = 429
            for c in contacts:
                mirror.log_outgoing(c, f"reply {c}")
            assert mirror.flush(20)
            assert mirror.stats()["retried"] >= 1
        storm = [r for r in cw.requests if r[2] == 429]
        # Without the shared pause, four workers would fire at all 20 contacts at once
        # and again after each contact's own backoff.
        assert 1 <= len(storm) <= 12
        assert len(cw.messages()) == 40
        assert len({m["content"] for m in cw.messages()}) == 40


def test_store_failure_returns_false_and_never_raises(cw, tmp_path):
    path = str(tmp_path / "locked.db")
    from chatwoot_mirror.store import SQLiteStore

    store = SQLiteStore(path, busy_timeout=0.1)
    with Mirror(config(cw, path), store=store) as mirror:
        blocker = sqlite3.connect(path, timeout=0.1)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            assert mirror.log_exchange("5511987650001", "oi", "olá") is False
            assert mirror.stats()["not_queued"] == 1
            assert "locked" in mirror.stats()["last_error"]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert mirror.log_exchange("5511987650001", "oi", "olá") is True


def test_close_is_bounded_and_the_next_process_delivers(cw, db_path):
    cw.faults.outage = True
    mirror = Mirror(config(cw, db_path))
    log_many(mirror, CONTACTS[:1], 3)
    began = time.monotonic()
    mirror.close(timeout=0.2)
    assert time.monotonic() - began < 5  # bounded: the drain gave up, the workers stopped
    assert mirror.log_incoming(CONTACTS[0], "after close") is False
    cw.faults.outage = False
    with Mirror(config(cw, db_path)) as again:
        assert again.flush(10)
    assert_each_once_in_order(cw, CONTACTS[:1], 3)


def test_outbox_payload_round_trip_keeps_everything():
    from chatwoot_mirror.client import Attachment
    from chatwoot_mirror.delivery import MirroredMessage
    from chatwoot_mirror.identity import identify
    from chatwoot_mirror.outbox import encode

    message = MirroredMessage(
        identity=identify("BR.1502576394655843"), direction="incoming", content="olá 🤖",
        sender_name="Maria", provider_message_id="wamid.X",
        attachments=(Attachment(b"\x00\xffdata", "a.png", "image/png"),),
    )
    back = decode(encode(message))
    assert back == message


# -- backoff, pace -----------------------------------------------------------------------------

def test_backoff_schedule_is_exponential_jittered_and_capped():
    backoff = Backoff(base=1.0, cap=300.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (5, 16), (9, 256), (10, 300), (30, 300)]:
        for _ in range(50):
            assert ceiling / 2 <= backoff.delay(attempt, rng) <= ceiling


def test_failed_attempts_schedule_retries_on_the_backoff_curve(db_path):
    """Drive one worker by hand under a frozen clock: each failure sets next_attempt_at."""

    class Down:
        def deliver(self, message, record_into=None):
            raise Unavailable("HTTP 503", operation="create_message", status=503)

        def find_delivered(self, message, record_into=None):
            return None

        def one_run(self):
            import contextlib

            return contextlib.nullcontext()

    cfg = Config(url="http://127.0.0.1:9", inbox_identifier="tok", db_path=db_path,
                 retry_base_seconds=1.0, retry_max_seconds=60.0)
    with freeze_time("2026-11-22 12:00:00") as frozen:
        mirror = Mirror(cfg, start=False)
        mirror.workers.deliverer = Down()
        mirror.workers.rng = random.Random(5)
        mirror.log_incoming("5511987650001", "oi")
        conn = sqlite3.connect(db_path)
        owner = mirror.workers.owners[0]
        delays = []
        for attempt in range(1, 10):
            now = time.time()
            rows = mirror.store.claim(owner, 30, 20, now)
            assert len(rows) == 1 and rows[0].attempts == attempt - 1
            mirror.workers._deliver_one(owner, decode(rows[0]))
            due = conn.execute("SELECT next_attempt_at FROM queue").fetchone()[0]
            ceiling = min(60.0, 2 ** (attempt - 1))
            assert ceiling / 2 <= due - now <= ceiling
            delays.append(due - now)
            assert mirror.store.claim(owner, 30, 20, now) == []  # not due yet
            frozen.move_to(datetime.fromtimestamp(due - 0.001, tz=timezone.utc))
            assert mirror.store.claim(owner, 30, 20, time.time()) == []  # a hair early
            # (datetime keeps microseconds only: step just past the due time)
            frozen.move_to(datetime.fromtimestamp(due + 0.001, tz=timezone.utc))
        assert delays == sorted(delays[:7]) + delays[7:]  # grows until the cap
        assert max(delays) <= 60
        conn.close()
        mirror.close(timeout=0)


def test_pacer_slows_everyone_after_429_and_recovers():
    clock = [0.0]
    pacer = Pacer(600, clock=lambda: clock[0])  # 10/s, bursts of 120
    assert pacer.wait_time() == 0
    assert pacer.penalize() == 1.0
    assert pacer.penalize() == 1.0  # a parallel 429 from the same storm
    assert pacer.wait_time() == pytest.approx(1.0)
    clock[0] = 1.0
    assert pacer.penalize() == 2.0  # the storm goes on: the pause doubles
    assert pacer.rate == 150  # halved twice
    clock[0] = 3.5
    assert pacer.wait_time() == 0
    for _ in range(200):
        pacer.reward()
    assert pacer.rate == 600


def test_pacer_keeps_under_the_configured_rate():
    clock = [0.0]
    pacer = Pacer(60, clock=lambda: clock[0])  # 1/s, burst 12
    sent = 0
    for _ in range(2000):
        if pacer.wait_time() == 0:
            sent += 1
        clock[0] += 0.05
    # 100 s elapsed: at most the burst plus one per second
    assert sent <= 12 + 100 + 1


# -- several processes --------------------------------------------------------------------------

def child_env(cw: FakeChatwoot, db_path: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATWOOT_")}
    env.update(cw.env())
    env.update(CHATWOOT_MIRROR_DB=db_path, CHATWOOT_MIRROR_SPILL=db_path + ".spill",
               CHATWOOT_MAX_REQUESTS_PER_MINUTE="0",
               CHATWOOT_RETRY_BASE_SECONDS="0.05", CHATWOOT_RETRY_MAX_SECONDS="0.5")
    env.update(extra)
    return env


def test_two_processes_sharing_one_db_make_one_conversation_per_contact(db_path):
    contacts = ["5511987650001", "5511987650002", "5511987650003", "5511987650004"]
    with FakeChatwoot(faults=Faults(latency=0.01)) as cw:
        procs = [
            subprocess.Popen(
                [sys.executable, str(HERE / "mirror_child.py"), ",".join(contacts), "3",
                 tag, "close"],
                env=child_env(cw, db_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
            for tag in ("p1", "p2")
        ]
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()
        convs = by_conversation(cw)
        assert len(convs) == len(contacts)
        creates = [r for r in cw.requests if r[0] == "POST" and r[1].endswith("/conversations")]
        assert len(creates) == len(contacts)
        for seq in convs.values():
            contact = seq[0].rsplit(" ", 1)[1]
            for tag in ("p1", "p2"):
                # each process's messages arrive once and in its own order
                assert [s for s in seq if s.startswith(tag)] == expected_sequence(
                    tag, contact, 3)


def test_process_killed_mid_delivery_is_finished_by_the_next_one(db_path):
    contacts = ["5511987650001", "5511987650002"]
    with FakeChatwoot(faults=Faults(latency=0.3)) as cw:
        child = subprocess.Popen(
            [sys.executable, str(HERE / "mirror_child.py"), ",".join(contacts), "3", "k",
             "hang"],
            env=child_env(cw, db_path, CHATWOOT_CLAIM_TTL_SECONDS="1"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert child.stdout.readline().strip() == b"queued"
        deadline = time.time() + 30
        while time.time() < deadline:
            posted = [r for r in cw.requests if r[1].endswith("/messages")]
            if len(posted) >= 2:
                break
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)  # mid-delivery: a request is in the air
        child.wait(10)
        delivered_before = len(cw.messages())
        assert delivered_before < 12
        cw.faults.latency = 0.0
        with Mirror(config(cw, db_path, claim_ttl_seconds=1)) as mirror:
            assert mirror.flush(30)
        assert_each_once_in_order(cw, contacts, 3, tag="k")


def test_periodic_jobs_survive_store_failures(db_path, caplog):
    from chatwoot_mirror.errors import StoreError
    from chatwoot_mirror.workers import DeliveryWorkers

    def broken() -> None:
        raise StoreError("disk full")

    def buggy() -> None:
        raise KeyError("oops")

    DeliveryWorkers._guarded(broken, "store checkpoint")()
    DeliveryWorkers._guarded(buggy, "host job")()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in warnings] == [
        "periodic job failed job=store checkpoint error=disk full"]
    assert errors and errors[0].exc_info is not None


def test_a_maybe_delivered_copy_is_found_even_after_later_messages_moved_the_floor(tmp_path):
    """A spilled copy of a row another host (or this one, before a store timeout) already
    delivered comes back uncertain after later messages were delivered: the check before
    posting reads back to the row's enqueue time, not to the last delivered id, and finds
    it (bot token: exact marker match)."""
    from chatwoot_mirror.store.sqlite import SQLiteStore

    with FakeChatwoot() as cw:
        db = str(tmp_path / "m.db")
        with Mirror(config(cw, db), start=False) as mirror:
            assert mirror.log_exchange("5511987650009", "first q", "first a")
        store = SQLiteStore(db)
        try:
            copies = store.claim("test", 30, 10, time.time() + 1)
            store.release(copies[0].contact_key, "test")
        finally:
            store.close()
        assert [json.loads(r.payload)["content"] for r in copies] == ["first q", "first a"]
        with Mirror(config(cw, db)) as mirror:
            assert mirror.log_exchange("5511987650009", "later q", "later a")
            assert mirror.flush(60)
            assert mirror.store.last_message_id("wa-5511987650009") is not None
            for copy in copies:
                copy.uncertain, copy.id = True, None
            assert mirror.store.enqueue(copies) == [True, True]
            assert mirror.flush(60)
        assert [m["content"] for m in cw.messages()] == [
            "first q", "first a", "later q", "later a"]


def test_a_claimed_run_reads_its_contacts_record_once_not_per_message():
    """One claimed run of a contact's messages reads the contact's record and who the
    contact is now from the store a few times (resolving it), not once per message;
    Chatwoot still gets all, in order."""
    from chatwoot_mirror.store import MemoryStore

    class Counting(MemoryStore):
        reads = 0
        alias_reads = 0

        def get_contact(self, key):
            Counting.reads += 1
            return super().get_contact(key)

        def get_value(self, scope, key, now):
            Counting.alias_reads += scope == "alias"
            return super().get_value(scope, key, now)

    store = Counting()
    with FakeChatwoot() as cw:
        with Mirror(config(cw, "unused.db", store_url="memory://"), store=store,
                    start=False) as mirror:
            for i in range(15):
                assert mirror.log_exchange("5511987650010", f"q{i}", f"a{i}")
            Counting.alias_reads = 0  # the host's calls read theirs: the delivery's count
            mirror.start()
            assert mirror.flush(60)
        assert [m["content"] for m in cw.messages()] == [
            text for i in range(15) for text in (f"q{i}", f"a{i}")]
    assert Counting.reads < 10  # 30 messages: 30+ reads before runs kept the record
    assert Counting.alias_reads < 10  # and who the contact is now (a merge forwards them)


def test_a_message_found_on_redelivery_gets_the_id_map_its_first_delivery_lost():
    """The store blips right after the post: the id-map write and the completion both
    fail. The claim lapses, the redelivery finds the message in Chatwoot (not posted
    twice) and records where it is, so a receipt or quote naming it still finds it."""
    from chatwoot_mirror.errors import StoreUnavailable
    from chatwoot_mirror.store import MemoryStore

    class Blip(MemoryStore):
        failing = {"set_values", "complete"}

        def set_values(self, items):
            if "set_values" in self.failing:
                self.failing.discard("set_values")
                raise StoreUnavailable("blip")
            return super().set_values(items)

        def complete(self, key, owner, chatwoot_message_id=None):
            if "complete" in self.failing:
                self.failing.discard("complete")
                raise StoreUnavailable("blip")
            return super().complete(key, owner, chatwoot_message_id)

    store = Blip()
    with FakeChatwoot() as cw:
        with Mirror(config(cw, "unused.db", store_url="memory://", claim_ttl_seconds=1.0),
                    store=store) as mirror:
            assert mirror.log_incoming("5511987650011", "oi", message_id="wamid.LOST")
            assert mirror.flush(60)
            assert not store.failing  # the blip happened
            [message] = cw.messages()
            located = mirror.message_ids.find("wamid.LOST")
            assert located is not None and located.message_id == message["id"]
            assert mirror.message_ids.provider_id(message["id"]) == "wamid.LOST"
