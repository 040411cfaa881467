"""Delivery when Chatwoot half-works (issue #19): Chatwoot's health as the pacer sees it,
short retries of safe requests within one attempt, resolution that resumes where it
failed, one probe at a time during an outage, and what stats/status/metrics show.

The scenarios run on the emulator's fault injection with short timings; nothing here
asserts how fast anything is (bench/half_working.py measures that)."""

from __future__ import annotations

import random
import re
import threading
import time

import pytest
import responses
from test_outbox import CONTACTS, assert_each_once_in_order, config, log_many

from chatwoot_mirror import Mirror
from chatwoot_mirror.client import ChatwootClient
from chatwoot_mirror.errors import Unavailable
from chatwoot_mirror.outbox import Backoff
from chatwoot_mirror.pacing import DEGRADED, DOWN, DOWN_AFTER, OK, SOON_ATTEMPTS, Pacer
from chatwoot_mirror.testing import FakeChatwoot


@pytest.fixture
def cw():
    with FakeChatwoot() as chatwoot:
        yield chatwoot


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the pacer's view of Chatwoot ------------------------------------------------------------

def test_health_is_ok_then_degraded_then_down_and_the_first_answer_ends_the_outage():
    clock = Clock()
    pacer = Pacer(None, clock=clock, wall=clock, outage_pause=1.0)
    assert pacer.health().state == OK
    pacer.observe(False, "create_message (HTTP 502): Bad Gateway")
    assert pacer.health().state == OK  # one failure among answers is noise
    pacer.observe(True)
    pacer.observe(False, "list_conversations (HTTP 500)")
    health = pacer.health()
    assert (health.state, health.failures, health.observed) == (DEGRADED, 2, 3)
    assert health.last_error == "list_conversations (HTTP 500)"
    assert health.last_error_at == 1000.0
    for _ in range(DOWN_AFTER):
        clock.now += 0.1
        pacer.observe(False, "cannot connect")
    assert pacer.is_down() and pacer.health().state == DOWN
    down_since = pacer.health().since
    clock.now += 5
    pacer.observe(True)  # a probe was answered
    health = pacer.health()
    assert health.state == DEGRADED and health.since == clock.now > down_since
    assert health.last_error == "cannot connect"  # with its time: no longer current
    clock.now += 61  # the failures age out of the window
    assert pacer.health().state == OK


def test_during_an_outage_everyone_waits_then_one_probe_goes_at_a_time():
    clock = Clock()
    pacer = Pacer(None, clock=clock, wall=clock, outage_pause=1.0, max_outage_pause=4.0)
    for _ in range(DOWN_AFTER):
        pacer.observe(False, "cannot connect")
    assert pacer.wait_time() == pytest.approx(1.0)  # the outage pause
    clock.now += 1.0
    assert pacer.wait_time() == 0  # this thread probes
    others: list[float] = []
    worker = threading.Thread(target=lambda: others.append(pacer.wait_time()))
    worker.start()
    worker.join()
    assert others == [0.05]  # another worker waits for the probe's answer
    pacer.observe(False, "cannot connect")  # the probe failed: a longer pause
    assert pacer.wait_time() == pytest.approx(2.0)
    clock.now += 2.0
    assert pacer.wait_time() == 0
    pacer.observe(False, "cannot connect")
    clock.now += 4.0  # capped at max_outage_pause
    assert pacer.wait_time() == 0
    pacer.finished()  # the probe's message needed no request: the others may go
    worker = threading.Thread(target=lambda: others.append(pacer.wait_time()))
    worker.start()
    worker.join()
    assert others[-1] == 0  # it takes the next probe
    pacer.observe(True)
    assert not pacer.is_down() and pacer.wait_time() == 0


def test_a_failed_message_waits_by_chatwoots_health():
    backoff, rng = Backoff(base=1.0, cap=300.0), random.Random(1)
    clock = Clock()
    pacer = Pacer(None, clock=clock, wall=clock, outage_pause=4.0)
    for _ in range(50):
        pacer.observe(True)
    # Chatwoot answers everything else: this contact's own problem, exponential backoff
    assert 8.0 <= pacer.retry_delay(5, backoff, rng) <= 16.0
    assert 64.0 <= pacer.retry_delay(8, backoff, rng) <= 128.0
    # Chatwoot fails some requests: transient trouble, soon again whatever the attempt
    pacer.observe(False, "HTTP 500")
    pacer.observe(False, "HTTP 500")
    assert pacer.health().state == DEGRADED
    assert 0.1 <= pacer.retry_delay(SOON_ATTEMPTS, backoff, rng) <= 0.5
    assert pacer.retry_delay(SOON_ATTEMPTS + 3, backoff, rng) >= 4.0  # then it backs off
    # Chatwoot answers nothing: after the outage pause, when the probe may have answered
    for _ in range(DOWN_AFTER):
        pacer.observe(False, "cannot connect")
    assert 4.5 <= pacer.retry_delay(1, backoff, rng) <= 5.0


def test_a_relay_or_bot_turn_retry_does_not_wait_for_chatwoots_outage(tmp_path):
    """Chatwoot's health decides the retries of what goes to Chatwoot only: a relay to the
    provider (or a bot turn) that fails during a Chatwoot outage keeps its own backoff."""
    from chatwoot_mirror.delivery import BOT, INCOMING, RELAY, MirroredMessage
    from chatwoot_mirror.identity import identify
    from chatwoot_mirror.store.memory import MemoryStore
    from chatwoot_mirror.workers import DeliveryWorkers

    class Recorder(MemoryStore):
        def retry_later(self, key, owner, at, error, *, uncertain, attempt):
            self.retries.append(at)

    store = Recorder()
    store.retries = []
    clock = Clock()
    pacer = Pacer(None, clock=clock, wall=clock, outage_pause=100.0, max_outage_pause=100.0)
    for _ in range(DOWN_AFTER):
        pacer.observe(False, "cannot connect")
    workers = DeliveryWorkers(store, deliverer=None, backoff=Backoff(base=1.0, cap=300.0),
                              pacer=pacer)
    identity = identify("5511988887777")
    for direction in (RELAY, BOT, INCOMING):
        before = time.time()
        workers._retry("w", MirroredMessage(identity, direction, "x"), None, "503",
                       ambiguous=False, attempt=True)
        waited = store.retries[-1] - before
        if direction == INCOMING:
            assert waited >= 100.0  # after the outage pause: the probe decides
        else:
            assert waited <= 1.1  # the first retry's delay, as for any relay


# -- the client: short retries of what is safe to repeat -------------------------------------

BASE = "https://cw.example"
INBOX = "inbox-ident"
LIST = re.compile(rf"{BASE}/public/api/v1/inboxes/{INBOX}/contacts/wa-1/conversations$")
POST_MESSAGE = f"{BASE}/api/v1/accounts/1/conversations/5/messages"


def client(pacer: Pacer | None = None) -> ChatwootClient:
    chatwoot = ChatwootClient(BASE, INBOX, account_id=1, bot_token="bot-token")
    chatwoot.health = pacer
    chatwoot.short_retries = (0.001, 0.001, 0.001)
    return chatwoot


@responses.activate
def test_a_get_is_tried_again_within_the_attempt_and_every_outcome_is_observed():
    responses.add(responses.GET, LIST, status=502, body="Bad Gateway")
    responses.add(responses.GET, LIST, status=500, json={"error": "boom"})
    responses.add(responses.GET, LIST, json=[{"id": 5, "status": "open"}])
    pacer = Pacer(None)
    assert client(pacer).list_conversations("wa-1") == [{"id": 5, "status": "open"}]
    assert len(responses.calls) == 3
    health = pacer.health()
    assert (health.failures, health.observed) == (2, 3) and "HTTP 500" in health.last_error


@responses.activate
def test_a_message_post_is_never_repeated_within_the_attempt():
    responses.add(responses.POST, POST_MESSAGE, status=500, json={"error": "boom"})
    with pytest.raises(Unavailable):
        client(Pacer(None)).create_message(5, "oi")
    assert len(responses.calls) == 1


@responses.activate
def test_contact_create_is_safe_to_repeat_but_nothing_is_repeated_while_chatwoot_is_down():
    url = f"{BASE}/public/api/v1/inboxes/{INBOX}/contacts"
    responses.add(responses.POST, url, status=503, body="")
    responses.add(responses.POST, url, json={"id": 1, "source_id": "wa-1"})
    assert client(Pacer(None)).create_contact("wa-1")["source_id"] == "wa-1"
    assert len(responses.calls) == 2
    down = Pacer(None)
    for _ in range(DOWN_AFTER):
        down.observe(False, "cannot connect")
    responses.calls.reset()
    responses.replace(responses.POST, url, status=503, body="")
    with pytest.raises(Unavailable):
        client(down).create_contact("wa-1")
    assert len(responses.calls) == 1  # probes decide, not a burst of retries


# -- resolution that resumes -----------------------------------------------------------------

def test_a_retry_resumes_after_the_contact_it_already_created(cw, db_path):
    """The conversation list fails past the short retries: the next attempt reads the
    list again and does not create the contact a second time."""
    failures = {"left": 5}
    original = cw.emulator.handle

    def handle(request):
        if (request.method == "GET" and request.path.endswith("/conversations")
                and failures["left"] > 0):
            failures["left"] -= 1
            from chatwoot_mirror.testing.emulator import Reply
            return Reply(503, {"error": "unavailable"})
        return original(request)

    cw.emulator.handle = handle
    with Mirror(config(cw, db_path)) as mirror:
        log_many(mirror, CONTACTS[:1], 2)
        assert mirror.flush(10)
    posts = [(m, p) for m, p, _ in cw.requests if m == "POST" and p.endswith("/contacts")]
    assert len(posts) == 1
    assert failures["left"] == 0
    assert_each_once_in_order(cw, CONTACTS[:1], 2)


def test_a_conversation_created_but_unanswered_is_looked_for_before_another(cw, db_path):
    original = cw.emulator.handle
    dropped = {"done": False}

    def handle(request):
        reply = original(request)
        if (request.method == "POST" and request.path.endswith("/conversations")
                and not dropped["done"]):
            dropped["done"] = True
            reply.drop = True  # committed, and the answer lost
        return reply

    cw.emulator.handle = handle
    with Mirror(config(cw, db_path)) as mirror:
        assert mirror.log_incoming(CONTACTS[0], "t q0 " + CONTACTS[0])
        assert mirror.flush(10)
        assert mirror.stats()["retried"] == 0  # found within the same attempt
    assert dropped["done"]
    creates = [p for m, p, _ in cw.requests if m == "POST" and p.endswith("/conversations")]
    assert len(creates) == 1 and len(cw.conversations()) == 1
    assert [m["content"] for m in cw.messages()] == ["t q0 " + CONTACTS[0]]


# -- outage and recovery on the emulator -----------------------------------------------------

def test_an_outage_is_probed_one_request_at_a_time_and_the_backlog_drains_after(cw, db_path):
    with Mirror(config(cw, db_path, retry_base_seconds=0.05, retry_max_seconds=0.4,
                       workers=4)) as mirror:
        cw.faults.outage = True
        contacts = [f"55119877{i:05d}" for i in range(12)]
        log_many(mirror, contacts, 2)
        assert not mirror.flush(2.0)  # two seconds of outage
        during = len(cw.requests)
        stats = mirror.stats()
        assert stats["chatwoot_health"] == DOWN and stats["queued"] == 48
        assert "503" in stats["chatwoot_last_error"]
        cw.faults.outage = False
        assert mirror.flush(20)
        assert mirror.stats()["chatwoot_health"] in (OK, DEGRADED)
    # 4 workers retrying 12 contacts every 0.05 to 0.4 s, each attempt with short retries
    # of its GETs, would have sent hundreds of requests in those two seconds
    assert during <= 40, during
    assert_each_once_in_order(cw, contacts, 2)


def test_half_working_chatwoot_loses_and_doubles_nothing(cw, db_path):
    cw.faults.error_rate = 0.3
    cw.faults.drop_after_commit_rate = 0.1
    cw.emulator.random.seed(19)
    with Mirror(config(cw, db_path)) as mirror:
        log_many(mirror, CONTACTS, 10)
        assert mirror.flush(60)
        stats = mirror.stats()
    assert stats["queued"] == 0 and stats["dead_letters"] == 0
    assert_each_once_in_order(cw, CONTACTS, 10)


# -- Chatwoot opening pending conversations on a failed bot webhook ---------------------------

def test_rules_undo_only_the_opening_chatwoot_did_on_a_bot_error():
    from chatwoot_mirror.handoff.rules import (
        BOT,
        CHATWOOT,
        CHATWOOT_BOT_ERROR,
        HUMAN,
        PENDING,
        RESUMED,
        STALE,
        UNCHANGED,
        Event,
        decide,
    )
    from chatwoot_mirror.store.base import HandoffRecord

    def error(at):
        return Event("wa-1", CHATWOOT_BOT_ERROR, BOT, "chatwoot_bot_error", 0.0, at=at)

    opened = HandoffRecord("wa-1", HUMAN, "taken_over", 100.0, 100.0, 7, version=3)
    undone = decide(opened, error(100.4))
    assert (undone.outcome, undone.actions) == (RESUMED, (PENDING,))
    assert undone.record.state == BOT and undone.record.version == 4
    # a person replied or was assigned: their conversation stays theirs
    replied = HandoffRecord("wa-1", HUMAN, "agent_reply", 100.0, 100.0, 7, version=3)
    assert decide(replied, error(100.4)) .outcome == UNCHANGED
    assert decide(replied, error(100.4)).record is None
    # an activity older than the opening on record explains an earlier one, not this
    assert decide(opened, error(90.0)).outcome == UNCHANGED
    # Chatwoot's evidence, not a clock: an activity its background job wrote late still
    # undoes the opening it follows (a bot error happens only to a pending conversation)
    assert decide(opened, error(300.0)).outcome == RESUMED
    # issue #30: the system opens, an agent answers 2 s later without assigning, and the
    # activity arrives after the answer: the agent keeps the customer
    answered = decide(opened, Event("wa-1", CHATWOOT, HUMAN, "agent_reply", 0.0, at=102.0,
                                    human_activity=True))
    assert answered.outcome == UNCHANGED and answered.record.reason == "agent_reply"
    assert decide(answered.record, error(100.4)).outcome == UNCHANGED
    # and so does an assignment
    assigned = decide(opened, Event("wa-1", CHATWOOT, HUMAN, "assigned", 0.0, at=101.0))
    assert decide(assigned.record, error(100.4)).outcome == UNCHANGED
    # the activity came first: the conversation still goes back to pending, and the
    # opening's own events, arriving after, are stale
    first = decide(HandoffRecord("wa-1", BOT, None, 90.0, None, 7, version=1), error(100.4))
    assert (first.outcome, first.actions) == (UNCHANGED, (PENDING,))
    late = decide(first.record, Event("wa-1", CHATWOOT, HUMAN, "taken_over", 0.0, at=100.0))
    assert late.outcome == STALE


@pytest.fixture
def bot_inbox(tmp_path):
    """An inbox with an active Agent Bot (conversations start pending), and a host app
    receiving Chatwoot's signed webhooks."""
    from test_handoff_e2e import HostApp

    def start(**extra):
        cw = FakeChatwoot(webhook_secret="inbox-secret", bot_active=True).start()
        mirror = Mirror(config(cw, str(tmp_path / f"m{len(started)}.db"),
                               webhook_secret="inbox-secret", **extra))
        sent: list = []
        mirror.on_agent_message(lambda m: sent.append(m) or "wamid.1")
        host = HostApp(mirror)
        cw.webhook_url = host.url
        started.append((cw, mirror, host))
        return cw, mirror, sent

    started: list = []
    yield start
    for cw, mirror, host in started:
        host.close()
        mirror.close(timeout=1)
        cw.stop()


def test_a_conversation_chatwoot_opened_on_a_bot_error_goes_back_to_pending(bot_inbox,
                                                                            caplog):
    from conftest import eventually

    cw, mirror, sent = bot_inbox()
    assert mirror.log_exchange(CONTACTS[0], "oi", "olá") and mirror.flush()
    [conv] = cw.conversations()
    assert conv["status"] == "pending"
    assert cw.emulator.open_on_bot_error(conv["id"])  # what Chatwoot does on the failure
    assert eventually(lambda: cw.conversations()[0]["status"] == "pending")
    assert cw.wait_for_webhooks()
    assert not mirror.is_paused(CONTACTS[0])
    toggles = [r for r in cw.requests if r[0] == "POST" and r[1].endswith("/toggle_status")]
    assert len(toggles) == 1 and toggles[0][2] == 200
    assert sent == []  # the customer is told nothing: nothing changed for them
    assert "back to pending" in caplog.text and "conversation=" in caplog.text
    assert mirror.log_exchange(CONTACTS[0], "e agora?", "o bot segue aqui") and mirror.flush()


def test_with_the_humans_policy_chatwoots_opening_stands(bot_inbox):
    from conftest import eventually

    cw, mirror, sent = bot_inbox(bot_error_policy="humans")
    assert mirror.log_incoming(CONTACTS[0], "oi") and mirror.flush()
    [conv] = cw.conversations()
    assert cw.emulator.open_on_bot_error(conv["id"])
    assert eventually(lambda: mirror.is_paused(CONTACTS[0]))
    assert cw.wait_for_webhooks()
    assert cw.conversations()[0]["status"] == "open"


def test_a_person_opening_the_conversation_is_still_a_takeover(bot_inbox):
    from conftest import eventually

    cw, mirror, sent = bot_inbox()
    assert mirror.log_incoming(CONTACTS[0], "oi") and mirror.flush()
    [conv] = cw.conversations()
    cw.emulator.assign(conv["id"], 3)  # Ana takes it: Chatwoot opens it
    assert eventually(lambda: mirror.is_paused(CONTACTS[0]))
    assert cw.wait_for_webhooks()
    assert cw.conversations()[0]["status"] == "open"


def test_the_emulator_opens_a_pending_conversation_when_the_bot_webhook_fails(tmp_path):
    """Emulator fidelity (lib/webhooks/trigger.rb): the webhook of a customer's message
    fails, so Chatwoot opens the pending conversation with its activity message; with
    keep_pending_on_bot_failure it stays pending."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    for keep in (False, True):
        with FakeChatwoot(bot_active=True, webhook_url=dead) as cw:
            cw.emulator.keep_pending_on_bot_failure = keep
            with Mirror(config(cw, str(tmp_path / f"k{keep}.db"))) as mirror:
                assert mirror.log_incoming(CONTACTS[0], "oi") and mirror.flush()
            assert cw.wait_for_webhooks()
            [conv] = cw.conversations()
            activities = [m["content"] for m in cw.messages(conv["id"])
                          if m["message_type"] == 2]
            if keep:
                assert conv["status"] == "pending" and activities == []
            else:
                assert conv["status"] == "open"
                assert activities == ["Conversation was marked open by system due to an "
                                      "error with the agent bot."]


def test_chatwoots_rate_limit_is_met_with_a_pause_not_a_storm(cw, db_path):
    """rack-attack's limit (here 20 requests a second, for short timings) with no pace of
    our own: each 429 pauses every worker, so only the requests already in flight meet
    the same refusal, and everything arrives once, in order."""
    cw.faults.rate_limit_per_minute = 20
    cw.faults.rate_limit_window = 1.0
    with Mirror(config(cw, db_path, workers=4)) as mirror:
        log_many(mirror, CONTACTS, 15)
        assert mirror.flush(60)
    statuses = [status for _, _, status in cw.requests]
    refused, answered = statuses.count(429), len(statuses) - statuses.count(429)
    assert refused >= 1  # the limit was met
    assert refused <= answered // 4, (refused, answered)  # a pause, not a storm
    assert_each_once_in_order(cw, CONTACTS, 15)


def test_an_agent_answering_2_s_after_the_system_opened_keeps_the_customer(bot_inbox):
    """Issue #30: the race the 60 s window lost. Chatwoot opens the pending conversation on
    a bot error, an agent answers 2 s later without assigning, and the opening's activity
    (a background job) arrives after the answer. The agent keeps the customer: the bot
    stays paused and the conversation is not put back to pending."""
    from datetime import datetime, timedelta

    cw, mirror, sent = bot_inbox()
    assert mirror.log_incoming(CONTACTS[0], "oi") and mirror.flush()
    [conv] = cw.conversations()
    assert cw.wait_for_webhooks()
    url, cw.webhook_url = cw.webhook_url, None  # Chatwoot's webhooks held, then replayed
    captured: list = []
    cw.emulator.listeners.append(lambda event, payload: captured.append((event, payload)))
    assert cw.emulator.open_on_bot_error(conv["id"])
    cw.agent_reply(conv["id"], "Oi, aqui é a Ana")  # no assignment
    cw.webhook_url = url

    # as Chatwoot sent them, but the activity last (its job ran late) and the answer 2 s
    # after the opening
    activity = [(e, p) for e, p in captured if p.get("message_type") == "activity"]
    replay = [(e, p) for e, p in captured if p.get("message_type") != "activity"] + activity
    [reply] = [p for e, p in replay if p.get("message_type") == "outgoing"]
    at = datetime.fromisoformat(str(reply["created_at"]).replace("Z", "+00:00"))
    reply["created_at"] = (at + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    assert [e for e, _ in replay] == ["conversation_status_changed", "conversation_updated",
                                      "message_created", "conversation_updated",
                                      "message_created"]
    for event, payload in replay:
        cw._deliver(event, payload)
    assert mirror.is_paused(CONTACTS[0])
    assert cw.conversations()[0]["status"] == "open"
    assert not [r for r in cw.requests if r[0] == "POST" and r[1].endswith("/toggle_status")]
