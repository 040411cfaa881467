"""One suite for every store backend: each primitive's documented guarantee.

A backend joins by adding its URL to ``BACKENDS`` (Redis in issue #15); it must pass
every test here unchanged. Backend-specific behaviour (SQLite's WAL, files, processes)
is tested beside the backend, in tests/test_store.py."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from chatwoot_mirror.errors import ConfigError, RowKeyTaken, StoreError, StoreUnavailable
from chatwoot_mirror.store import (
    HandoffRecord,
    MemoryStore,
    OutboxRow,
    SQLiteStore,
    Store,
    open_store,
    parse_store_url,
)

#: "spilling": Redis behind the local spill (store/spill.py), which must keep every
#: guarantee of the store it wraps while Redis answers
BACKENDS = ["sqlite", "memory", "redis", "spilling", "sentinel", "cluster"]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    if request.param in ("redis", "spilling"):
        url = request.getfixturevalue("redis_url")
    elif request.param == "sentinel":  # the master that three Sentinels name
        url = f"{request.getfixturevalue('sentinel_set').url}?prefix=t{uuid.uuid4().hex[:10]}:"
    elif request.param == "cluster":  # three masters, sharded by hash tags
        url = f"{request.getfixturevalue('redis_cluster').url}?prefix=t{uuid.uuid4().hex[:10]}:"
    else:
        url = {"sqlite": f"sqlite:///{tmp_path}/contract.db", "memory": "memory://"}[
            request.param]
    s = open_store(url, spill=str(tmp_path / "spill.db") if request.param == "spilling"
                   else None)
    yield s
    s.close()


def row(key: str, contact: str = "wa-1", unique: str | None = None,
        created_at: float = 0.0) -> OutboxRow:
    return OutboxRow(key=key, contact_key=contact, payload='{"k":"' + key + '"}',
                     unique_key=unique, created_at=created_at)


def claim_all(store: Store, owner: str = "w", ttl: float = 30.0, limit: int = 50,
              now: float | None = None) -> list[OutboxRow]:
    return store.claim(owner, ttl, limit, time.time() if now is None else now)


# -- selecting a backend ---------------------------------------------------------------------

@pytest.mark.parametrize("url,expected", [
    ("sqlite:///data/m.db", ("sqlite", "data/m.db")),
    ("sqlite:////srv/m.db", ("sqlite", "/srv/m.db")),
    ("SQLITE:///m.db", ("sqlite", "m.db")),
    ("memory://", ("memory", "")),
    ("redis://localhost:6379/0", ("redis", "redis://localhost:6379/0")),
    ("rediss://:pw@cache.example.com:6380/2?prefix=bot1:",
     ("rediss", "rediss://:pw@cache.example.com:6380/2?prefix=bot1:")),
])
def test_store_urls(url, expected):
    assert parse_store_url(url) == expected


@pytest.mark.parametrize("url", ["", "m.db", "sqlite://", "sqlite:///", "sqlite:///dir/",
                                 "postgres://db/x", "memory://shared", "redis//localhost",
                                 "redis://", "redis:///0"])
def test_a_wrong_store_url_names_the_variable(url):
    with pytest.raises(ConfigError) as info:
        parse_store_url(url)
    assert info.value.variable == "CHATWOOT_MIRROR_STORE"


def test_the_url_picks_the_backend(tmp_path):
    sqlite, memory = open_store(f"sqlite:///{tmp_path}/a.db"), open_store("memory://")
    assert isinstance(sqlite, SQLiteStore) and sqlite.path == f"{tmp_path}/a.db"
    assert isinstance(memory, MemoryStore)
    sqlite.close()
    memory.close()


# -- contacts -------------------------------------------------------------------------------

def test_contact_round_trip_keeps_conversation_and_identity(store):
    assert store.get_contact("wa-1") is None
    store.save_contact("wa-1", "wa-1", 42, '{"key":"wa-1"}', instance="i1")
    store.set_conversation("wa-1", 128)
    store.save_contact("wa-1", "wa-1", 43, instance="i1")  # no identity given: kept
    record = store.get_contact("wa-1")
    assert (record.contact_id, record.conversation_id, record.identity, record.instance) == (
        43, 128, '{"key":"wa-1"}', "i1")


def test_rebinding_a_contact_to_another_instance_clears_its_ids(store):
    store.save_contact("wa-1", "wa-1", 42, instance="i1")
    store.set_conversation("wa-1", 128)
    store.set_last_message_id("wa-1", 900)
    store.save_contact("wa-1", "wa-1", 7, instance="i2")
    record = store.get_contact("wa-1")
    assert (record.contact_id, record.conversation_id, record.instance) == (7, None, "i2")
    assert store.last_message_id("wa-1") is None


def test_enqueue_keeps_a_row_marked_uncertain(store):
    """A row moved from the spill after an unclear write comes in uncertain, and stays so
    (its delivery looks in Chatwoot before posting)."""
    first = row("a")
    first.uncertain = True
    store.enqueue([first, row("b")])
    claimed = store.claim("w", 30, 10, time.time() + 1)
    assert [(r.key, r.uncertain) for r in claimed] == [("a", True), ("b", False)]


def test_a_row_moved_from_the_spill_is_admitted_once_even_after_delivery(store):
    """A move repeated after a lost answer must not admit a row its first move admitted
    and a worker already delivered (the delivery's Chatwoot check cannot see it then)."""
    if isinstance(store, (MemoryStore, SQLiteStore)):
        pytest.skip("never behind a spill: enqueue_moved is enqueue")
    assert store.enqueue_moved([row("m1")]) == [True]
    [claimed] = store.claim("w", 30, 10, time.time() + 1)
    assert store.complete(claimed.key, "w")
    assert store.enqueue_moved([row("m1"), row("m2")]) == [False, True]
    assert [r.key for r in store.claim("w", 30, 10, time.time() + 1)] == ["m2"]
    assert store.enqueue([row("m1")]) == [True]  # the host's own rows are not affected


def test_a_row_key_already_queued_is_row_key_taken_and_writes_nothing(store):
    store.enqueue([row("a")])
    with pytest.raises(RowKeyTaken):
        store.enqueue([row("c"), row("a")])
    assert [r.key for r in store.claim("w", 30, 10, time.time() + 1)] == ["a"]


def test_take_tokens_is_one_bucket_for_every_process_of_a_shared_store(store, tmp_path):
    """Redis keeps one bucket for all hosts (the pace towards one Chatwoot); the embedded
    backends keep none and the caller paces itself."""
    if not isinstance(store, (MemoryStore, SQLiteStore)):
        other = open_store(_url_of(store))  # a second host on the same Redis and prefix
        try:
            assert [store.take_tokens("cw", 60, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
            wait = other.take_tokens("cw", 60, 3)
            assert wait is not None and 0.5 < wait <= 1.0  # the other host's empty too
            assert store.take_tokens("another chatwoot", 60, 3) == 0.0
        finally:
            other.close()
    else:
        assert store.take_tokens("cw", 60, 3) is None


def _url_of(store: Store) -> str:
    redis_store = getattr(store, "primary", store)
    return f"{redis_store.url}{'&' if '?' in redis_store.url else '?'}prefix={redis_store.prefix}"


def test_set_conversation_of_unknown_contact_fails(store):
    with pytest.raises(StoreError):
        store.set_conversation("nobody", 1)


def test_forget_conversation_is_compare_and_clear(store):
    store.save_contact("wa-1", "wa-1", 42)
    store.set_conversation("wa-1", 129)
    assert store.forget_conversation("wa-1", 128) is False
    assert store.get_contact("wa-1").conversation_id == 129
    assert store.forget_conversation("wa-1", 129) is True
    assert store.get_contact("wa-1").conversation_id is None


def test_last_message_id_only_rises(store):
    store.save_contact("wa-1", "wa-1", 42)
    assert store.last_message_id("wa-1") is None
    store.set_last_message_id("wa-1", 10)
    store.set_last_message_id("wa-1", 5)
    assert store.last_message_id("wa-1") == 10
    store.set_last_message_id("nobody", 5)  # unknown contact: nothing to raise
    assert store.last_message_id("nobody") is None


# -- locks ------------------------------------------------------------------------------------

def test_lock_is_exclusive_renewable_and_expires(store):
    assert store.acquire_lock("x", "a", ttl=10)
    assert not store.acquire_lock("x", "b", ttl=10)
    assert store.acquire_lock("x", "a", ttl=10)  # renew
    store.release_lock("x", "b")  # not the holder: nothing happens
    assert not store.acquire_lock("x", "b", ttl=10)
    store.release_lock("x", "a")
    assert store.acquire_lock("x", "b", ttl=0.05)
    time.sleep(0.1)
    assert store.acquire_lock("x", "a", ttl=10)  # b's lock lapsed


# -- outbox -----------------------------------------------------------------------------------

def test_enqueue_skips_a_unique_key_seen_before_even_after_completion(store):
    assert store.enqueue([row("a", unique="wamid.1"), row("b")]) == [True, True]
    assert store.enqueue([row("c", unique="wamid.1")]) == [False]
    for item in claim_all(store):
        assert store.complete(item.key, "w")
    assert store.enqueue([row("d", unique="wamid.1")]) == [False]
    assert store.outbox_counts(time.time()).queued == 0


def test_enqueue_is_all_or_none_and_ids_follow_enqueue_order(store):
    rows = [row("a"), row("b"), row("c")]
    assert store.enqueue(rows) == [True, True, True]
    assert rows[0].id < rows[1].id < rows[2].id
    with pytest.raises(StoreError):
        store.enqueue([row("d"), row("a")])  # "a" is queued: neither is written
    assert [r.key for r in claim_all(store)] == ["a", "b", "c"]


def test_claim_takes_one_contact_oldest_first_and_keeps_others_out(store):
    now = time.time()
    store.enqueue([row("a1", "wa-a", created_at=now - 3), row("b1", "wa-b", created_at=now - 2),
                   row("a2", "wa-a", created_at=now - 1)])
    first = store.claim("w1", 30, 10, now)
    assert [r.key for r in first] == ["a1", "a2"]
    assert not any(r.uncertain for r in first)
    assert [r.key for r in store.claim("w2", 30, 10, now)] == ["b1"]  # contacts in parallel
    assert store.claim("w3", 30, 10, now) == []  # both contacts are held
    assert store.outbox_counts(now).in_flight == 2


def test_claim_respects_limit_and_due_time(store):
    now = time.time()
    store.enqueue([row(f"m{i}", created_at=now) for i in range(5)])
    assert [r.key for r in store.claim("w", 30, 2, now)] == ["m0", "m1"]
    store.retry_later("m0", "w", now + 60, "503", uncertain=False, attempt=True)
    assert store.claim("w", 30, 2, now) == []  # not due yet
    assert store.next_due_at(now) == pytest.approx(now + 60, abs=1e-3)
    assert [r.key for r in store.claim("w", 30, 2, now + 61)] == ["m0", "m1"]


def test_a_lapsed_claim_makes_its_rows_uncertain_for_good(store):
    now = time.time()
    store.enqueue([row("a", created_at=now)])
    assert store.claim("dead-worker", 5, 10, now)
    assert store.claim("w", 5, 10, now + 1) == []  # still held
    again = store.claim("w", 5, 10, now + 10)
    assert [(r.key, r.uncertain) for r in again] == [("a", True)]
    store.retry_later("a", "w", now + 10, "timeout", uncertain=False, attempt=True)
    assert store.claim("w", 5, 10, now + 11)[0].uncertain  # sticky until completed


def test_an_owner_whose_claim_lapsed_cannot_touch_the_new_owners_claim(store):
    """Fencing: a host that wakes after its claim expired (a long GC pause, a frozen VM)
    must not complete, retry, dead-letter or release what another host now holds."""
    now = time.time()
    store.enqueue([row("a", created_at=now), row("b", created_at=now)])
    assert store.claim("sleeper", 5, 10, now)
    taken = store.claim("w2", 30, 10, now + 10)
    assert [r.key for r in taken] == ["a", "b"]
    assert store.complete("a", "sleeper") is False
    store.retry_later("a", "sleeper", now + 999, "late", uncertain=False, attempt=True)
    store.dead_letter("b", "sleeper", "late")
    store.release("wa-1", "sleeper")
    assert store.renew_claims(["sleeper"], 100, now + 11) == 0
    assert store.claim("w3", 30, 10, now + 12) == []  # still w2's
    assert store.dead_letters() == []
    assert store.complete("a", "w2") and store.complete("b", "w2")
    assert store.outbox_counts(now + 12).queued == 0


def test_renew_claims_extends_only_the_owners_claims(store):
    now = time.time()
    store.enqueue([row("a", "wa-a", created_at=now), row("b", "wa-b", created_at=now)])
    store.claim("w1", 5, 10, now)
    store.claim("w2", 5, 10, now)
    assert store.renew_claims(["w1"], 100, now + 4) == 1
    assert store.renew_claims([], 100, now + 4) == 0
    # at now + 20, w2's claim has lapsed and w1's has not
    assert [r.key for r in store.claim("w3", 5, 10, now + 20)] == ["b"]
    assert store.claim("w3", 5, 10, now + 20) == []


def test_complete_needs_the_claim_and_raises_the_last_message_id(store):
    store.save_contact("wa-1", "wa-1", 42)
    store.enqueue([row("a")])
    assert store.complete("a", "w") is False  # nobody claimed it
    claim_all(store, owner="w")
    assert store.complete("a", "intruder") is False
    assert store.complete("a", "w", chatwoot_message_id=555) is True
    assert store.last_message_id("wa-1") == 555
    assert store.outbox_counts(time.time()).queued == 0
    assert store.next_due_at(time.time()) is None


def test_complete_with_values_stores_the_values_whether_or_not_the_claim_is_held(store):
    """One call per delivered message: its id map and its completion. The id map is
    stored even when the claim lapsed (the message is in Chatwoot either way)."""
    now = time.time()
    store.save_contact("wa-1", "wa-1", 42)
    store.enqueue([row("a"), row("b")])
    claim_all(store, owner="w")
    assert store.complete_with_values(
        "a", "w", 601, [("ids", "wamid.A", "601", now + 60), ("ids", "cw:601", "wamid.A", None)]
    ) is True
    assert store.get_value("ids", "wamid.A", now) == "601"
    assert store.get_value("ids", "cw:601", now + 10_000) == "wamid.A"
    assert store.last_message_id("wa-1") == 601
    assert store.complete_with_values("b", "intruder", 602, [("ids", "wamid.B", "602", None)]
                                      ) is False
    assert store.get_value("ids", "wamid.B", now) == "602"
    assert [r.key for r in claim_all(store, owner="w", now=now + 60)] == ["b"]  # still queued
    assert store.complete_with_values("b", "w", None, []) is True  # nothing to store
    assert store.outbox_counts(time.time()).queued == 0


def test_retry_later_counts_attempts_and_keeps_the_error(store):
    now = time.time()
    store.enqueue([row("a", created_at=now)])
    store.claim("w", 30, 10, now)
    store.retry_later("a", "intruder", now, "x", uncertain=True, attempt=True)  # no-op
    store.retry_later("a", "w", now, "HTTP 503", uncertain=True, attempt=True)
    again = store.claim("w", 30, 10, now)
    assert (again[0].attempts, again[0].last_error, again[0].uncertain) == (1, "HTTP 503", True)
    store.retry_later("a", "w", now, "paced", uncertain=False, attempt=False)
    assert store.claim("w", 30, 10, now)[0].attempts == 1  # not an attempt


def test_release_drops_the_claim_without_penalty(store):
    now = time.time()
    store.enqueue([row("a", created_at=now)])
    store.claim("w", 30, 10, now)
    store.release("wa-1", "intruder")
    assert store.claim("w2", 30, 10, now) == []
    store.release("wa-1", "w")
    again = store.claim("w2", 30, 10, now)
    assert [(r.key, r.attempts, r.uncertain) for r in again] == [("a", 0, False)]


def test_dead_letters_never_block_later_rows_and_can_be_retried(store):
    now = time.time()
    store.enqueue([row("a", created_at=now - 2), row("b", created_at=now - 1)])
    store.claim("w", 30, 1, now)
    store.dead_letter("a", "w", "422 invalid")
    store.release("wa-1", "w")
    assert [r.key for r in store.claim("w", 30, 10, now)] == ["b"]
    assert store.complete("b", "w")
    assert [(r.key, r.last_error) for r in store.dead_letters()] == [("a", "422 invalid")]
    counts = store.outbox_counts(now)
    assert (counts.queued, counts.dead) == (0, 1)
    assert store.retry_dead(["nope"]) == 0
    assert store.retry_dead([]) == 0
    assert store.retry_dead() == 1
    again = store.claim("w", 30, 10, time.time())
    assert [(r.key, r.attempts) for r in again] == [("a", 0)]


def test_outbox_counts_and_has_queued_before(store):
    now = time.time()
    store.enqueue([row("a", "wa-a", created_at=now - 30), row("b", "wa-b", created_at=now - 10),
                   row("c", "wa-b", created_at=now)])
    counts = store.outbox_counts(now)
    assert (counts.queued, counts.in_flight, counts.dead) == (3, 0, 0)
    assert counts.oldest_queued_at == pytest.approx(now - 30, abs=1e-3)
    assert not store.has_queued_before(now - 31)
    assert store.has_queued_before(now - 30)
    store.claim("w", 30, 10, now)
    assert store.outbox_counts(now).in_flight == 1


def test_the_oldest_row_is_found_whatever_order_rows_were_created_in(store):
    """Two hosts' clocks disagree, or a dead letter comes back: creation order and queue
    order differ. flush and the oldest age must still see the oldest row."""
    now = time.time()
    store.enqueue([row("late", created_at=now), row("early", created_at=now - 100),
                   row("mid", created_at=now - 50)])
    assert store.outbox_counts(now).oldest_queued_at == pytest.approx(now - 100, abs=1e-3)
    assert [r.key for r in claim_all(store, now=now)] == ["late", "early", "mid"]
    assert store.complete("early", "w")  # not the head of the queue: still found
    assert store.outbox_counts(now).oldest_queued_at == pytest.approx(now - 50, abs=1e-3)
    assert store.complete("late", "w")
    assert not store.has_queued_before(now - 51) and store.has_queued_before(now - 50)
    store.dead_letter("mid", "w", "422")
    assert store.outbox_counts(now).oldest_queued_at is None
    assert not store.has_queued_before(now)
    store.enqueue([row("next", created_at=now)])
    assert store.retry_dead() == 1
    assert store.outbox_counts(now).oldest_queued_at == pytest.approx(now - 50, abs=1e-3)
    assert [r.key for r in claim_all(store, owner="w2", now=now + 60)] == ["mid", "next"]


def test_prune_seen_forgets_old_unique_keys_names_and_expired_values(store):
    now = time.time()
    store.enqueue([row("a", unique="old", created_at=now - 100),
                   row("b", unique="new", created_at=now)])
    assert store.first_seen("webhook:1", now - 100)
    store.set_value("s", "gone", "v", expires_at=now - 50)
    store.set_value("s", "kept", "v", expires_at=now + 50)
    store.set_value("s", "forever", "v")
    assert store.prune_seen(now - 60) == 1
    assert store.enqueue([row("a2", unique="old"), row("b2", unique="new")]) == [True, False]
    assert store.first_seen("webhook:1", now)
    assert store.get_value("s", "kept", now) == "v"
    assert store.get_value("s", "forever", now) == "v"


# -- handoff records ----------------------------------------------------------------------------

def test_handoff_record_compare_and_set(store):
    first = HandoffRecord("wa-1", "human", "keyword", 0.0, 10.0, None, 0, 1)
    assert store.get_handoff("wa-1") is None
    assert store.put_handoff(first, expected_version=0) is False  # none stored: expect None
    assert store.put_handoff(first, expected_version=None) is True
    assert store.put_handoff(first, expected_version=None) is False  # someone got there
    assert store.get_handoff("wa-1") == first
    second = HandoffRecord("wa-1", "bot", "resolved", 5.0, 10.0, 128, 3, 2)
    assert store.put_handoff(second, expected_version=7) is False  # lost the race
    assert store.put_handoff(second, expected_version=1) is True
    assert store.get_handoff("wa-1") == second


def test_list_handoffs_by_state(store):
    store.put_handoff(HandoffRecord("wa-1", "human", "r", 0.0, 1.0, None, 0, 1), None)
    store.put_handoff(HandoffRecord("wa-2", "bot", "r", 0.0, None, None, 0, 1), None)
    store.put_handoff(HandoffRecord("wa-3", "human", "r", 0.0, 2.0, 9, 0, 1), None)
    assert sorted(r.contact_key for r in store.list_handoffs("human")) == ["wa-1", "wa-3"]
    assert [r.contact_key for r in store.list_handoffs("bot")] == ["wa-2"]
    assert store.list_handoffs("nobody") == []


def test_first_seen(store):
    assert store.first_seen("webhook:abc", 1.0) is True
    assert store.first_seen("webhook:abc", 2.0) is False
    assert store.first_seen("webhook:abd", 2.0) is True


# -- values -----------------------------------------------------------------------------------

def test_values_expire_replace_and_delete_by_expectation(store):
    now = time.time()
    assert store.get_value("typebot", "wa-1", now) is None
    store.set_value("typebot", "wa-1", "s1", expires_at=now + 10)
    assert store.get_value("typebot", "wa-1", now) == "s1"
    assert store.get_value("typebot", "wa-1", now + 10) is None  # expired at its expiry
    store.set_value("typebot", "wa-1", "s2")  # replaced, expiry too
    assert store.get_value("typebot", "wa-1", now + 1000) == "s2"
    assert store.get_value("other", "wa-1", now) is None  # scopes are apart
    assert store.delete_value("typebot", "wa-1", expected="s1") is False
    assert store.delete_value("typebot", "wa-1", expected="s2") is True
    assert store.delete_value("typebot", "wa-1") is False


def test_add_value_keeps_the_first_unexpired_value(store):
    now = time.time()
    assert store.add_value("alias", "lid-1", "wa-1", now) == "wa-1"
    assert store.add_value("alias", "lid-1", "wa-2", now) == "wa-1"  # the first one stays
    assert store.get_value("alias", "lid-1", now + 10**9) == "wa-1"  # and never expires
    store.set_value("alias", "lid-2", "old", expires_at=now + 5)
    assert store.add_value("alias", "lid-2", "new", now + 1) == "old"
    assert store.add_value("alias", "lid-2", "new", now + 5) == "new"  # expired: replaced
    assert store.get_value("alias", "lid-2", now + 10**9) == "new"
    assert store.add_value("other", "lid-1", "x", now) == "x"  # scopes are apart


def test_one_add_value_wins_among_racing_threads(store):
    now = time.time()
    results: list[str] = []
    lock = threading.Lock()

    def add(i: int) -> None:
        held = store.add_value("alias", "bsuid-BR_1", f"person-{i}", now)
        with lock:
            results.append(held)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert store.get_value("alias", "bsuid-BR_1", now) == results[0]


# -- concurrency and lifecycle ---------------------------------------------------------------

def test_one_unique_key_wins_among_racing_threads(store):
    results: list[bool] = []
    lock = threading.Lock()

    def enqueue(i: int) -> None:
        flags = store.enqueue([row(f"k{i}", unique="wamid.same")])
        with lock:
            results.extend(flags)

    threads = [threading.Thread(target=enqueue, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 15 + [True]


def test_racing_claims_hand_each_contact_to_one_owner(store):
    now = time.time()
    store.enqueue([row(f"m{i}", f"wa-{i}", created_at=now) for i in range(20)])
    taken: list[str] = []
    lock = threading.Lock()

    def work(owner: str) -> None:
        while True:
            rows = store.claim(owner, 30, 10, now)
            if not rows:
                return
            with lock:
                taken.extend(r.key for r in rows)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == sorted(f"m{i}" for i in range(20))  # each exactly once


def test_a_closed_store_refuses_work(store):
    store.close()
    with pytest.raises(StoreError):
        store.get_contact("wa-1")
    with pytest.raises(StoreError):
        store.enqueue([row("a")])
    store.close()  # twice is fine


def test_redis_url_opens_the_redis_backend_with_its_prefix(redis_url):
    from chatwoot_mirror.store.redis import RedisStore

    store = open_store(redis_url)
    assert isinstance(store, RedisStore) and store.prefix == redis_url.split("prefix=")[1]
    store.enqueue([row("a")])
    import redis

    client = redis.Redis.from_url(redis_url.split("?")[0], decode_responses=True)
    assert all(key.startswith(store.prefix) for key in client.keys(store.prefix + "*"))
    assert client.exists(store.prefix + "q:wa-1")
    client.close()
    store.close()


def test_redis_without_the_package_names_the_pip_command(monkeypatch):
    import chatwoot_mirror.store.redis as backend

    monkeypatch.setattr(backend, "redis", None)
    with pytest.raises(ConfigError) as info:
        open_store("redis://127.0.0.1:1/0")
    assert info.value.variable == "CHATWOOT_MIRROR_STORE"
    assert "pip install 'chatwoot-mirror[redis]'" in str(info.value)


def test_an_unreachable_redis_is_a_store_error_within_the_timeout():
    """Nothing listens on the port: calls fail with StoreError (the host's log_* turns
    that into False) after the short socket timeout."""
    from chatwoot_mirror.store.redis import RedisStore

    pytest.importorskip("redis")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{port}/0", socket_timeout=0.5)
    with pytest.raises(StoreUnavailable) as caught:
        store.enqueue([row("a")])
    assert caught.value.maybe_applied is False  # refused: surely not applied
    with pytest.raises(StoreUnavailable):
        store.get_handoff("wa-1")
    store.close()
