"""Chatwoot webhooks: verification, the pause/resume state machine, the Flask blueprint."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import CONTRACTS, contract
from flask import Flask
from freezegun import freeze_time

from chatwoot_mirror import Config, ConfigError, Mirror
from chatwoot_mirror.flask import create_blueprint
from chatwoot_mirror.webhooks import WebhookRequest

SECRET = "whsec-inbox-SECRET"
CONTACT = "5511987654321"  # wa-5511987654321 in every contract file
WEBHOOKS = sorted(p.name for p in (CONTRACTS / "chatwoot" / "webhooks").glob("*.json"))


def make_mirror(tmp_path: Path, **extra) -> Mirror:
    values = dict(url="http://127.0.0.1:9", inbox_identifier="tok",
                  db_path=str(tmp_path / "m.db"), webhook_secret=SECRET)
    values.update(extra)
    return Mirror(Config(**values), start=False)


def signed(payload: dict | bytes, *, secret: str = SECRET, stamp: int | None = None,
           delivery: str | None = None) -> WebhookRequest:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    stamp = int(time.time()) if stamp is None else stamp
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Chatwoot-Timestamp": str(stamp), "X-Chatwoot-Signature": f"sha256={digest}",
               "Content-Type": "application/json"}
    if delivery:
        headers["X-Chatwoot-Delivery"] = delivery
    return WebhookRequest(headers=headers, body=body)


@pytest.fixture
def mirror(tmp_path):
    m = make_mirror(tmp_path)
    yield m
    m.close(timeout=0)


@pytest.fixture
def handler(mirror):
    return mirror.webhook_handler()


EXPECTED = {
    "message_created.json": ("paused", True),
    "message_created_incoming.json": ("ignored", False),
    "message_created_agent_bot.json": ("ignored", False),
    "message_created_private_note.json": ("ignored", False),
    "message_created_template.json": ("ignored", False),
    "message_updated.json": ("ignored", False),
    "conversation_created.json": ("ignored", False),
    "conversation_updated_assignee.json": ("paused", True),
    "conversation_opened.json": ("paused", True),
    "conversation_typing_on.json": ("ignored", False),
    "conversation_typing_off.json": ("ignored", False),
    "contact_created.json": ("ignored", False),
    "contact_updated.json": ("ignored", False),
    "webwidget_triggered.json": ("ignored", False),
}
RESUMERS = ["conversation_status_changed.json", "conversation_updated.json",
            "conversation_resolved.json"]


def test_every_contract_webhook_is_covered():
    assert set(WEBHOOKS) == set(EXPECTED) | set(RESUMERS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_contract_webhooks_pause_only_on_human_takeover(handler, mirror, name):
    response = handler.handle(signed(contract(f"chatwoot/webhooks/{name}")))
    result, paused = EXPECTED[name]
    assert (response.status, response.body["result"]) == (200, result)
    assert mirror.is_paused(CONTACT) is paused


@pytest.mark.parametrize("name", RESUMERS)
def test_contract_webhooks_that_give_the_contact_back(handler, mirror, name):
    handler.handle(signed(contract("chatwoot/webhooks/message_created.json")))  # 14:02
    assert mirror.is_paused(CONTACT)
    response = handler.handle(signed(contract(f"chatwoot/webhooks/{name}")))  # 14:05
    assert (response.status, response.body["result"]) == (200, "resumed")
    assert not mirror.is_paused(CONTACT)


# -- verification -------------------------------------------------------------------------------

def test_signature_vectors(handler, mirror):
    payload = contract("chatwoot/webhooks/message_created.json")
    body = json.dumps(payload).encode()
    now = int(time.time())
    body_only = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()  # Chatwoot #13809
    cases = {
        "wrong secret": signed(payload, secret="other-secret"),
        "stale timestamp": signed(payload, stamp=now - 301),
        "future timestamp": signed(payload, stamp=now + 301),
        "body-only signature": WebhookRequest(
            {"X-Chatwoot-Timestamp": str(now), "X-Chatwoot-Signature": f"sha256={body_only}"},
            body),
        "no signature": WebhookRequest({}, body),
        "tampered body": WebhookRequest(signed(payload).headers, body.replace(b"Ana", b"Eve")),
    }
    for label, request in cases.items():
        response = handler.handle(request)
        assert response.status == 401, label
        assert not mirror.is_paused(CONTACT), label
    assert handler.handle(signed(payload, stamp=now - 299)).status == 200
    assert mirror.is_paused(CONTACT)


def test_secrets_never_reach_logs_or_answers(handler, caplog):
    caplog.set_level("DEBUG")
    payload = contract("chatwoot/webhooks/message_created.json")
    response = handler.handle(signed(payload, secret="wrong"))
    handler.handle(signed(payload))
    text = caplog.text + json.dumps(response.body)
    assert SECRET not in text
    assert payload["conversation"]["contact_inbox"]["pubsub_token"] not in text


def test_token_in_url_for_old_chatwoot(tmp_path):
    m = make_mirror(tmp_path, webhook_secret=None, webhook_token="url-token")
    handler = m.webhook_handler()
    body = json.dumps(contract("chatwoot/webhooks/message_created.json")).encode()
    assert handler.handle(WebhookRequest({}, body, {"token": "nope"})).status == 401
    assert handler.handle(WebhookRequest({}, body)).status == 401
    assert handler.handle(WebhookRequest({}, body, {"token": "url-token"})).status == 200
    m.close(timeout=0)


def test_no_verification_is_refused_unless_insecure_on_purpose(tmp_path):
    m = make_mirror(tmp_path, webhook_secret=None)
    with pytest.raises(ConfigError) as info:
        create_blueprint(m)
    assert info.value.variable == "CHATWOOT_WEBHOOK_SECRET"
    assert "CHATWOOT_WEBHOOK_INSECURE" in str(info.value)
    m.close(timeout=0)
    m = make_mirror(tmp_path, webhook_secret=None, webhook_insecure=True)
    body = json.dumps(contract("chatwoot/webhooks/message_created.json")).encode()
    assert m.webhook_handler().handle(WebhookRequest({}, body)).status == 200
    m.close(timeout=0)


def test_delivery_id_replay_is_applied_once(handler, mirror):
    calls = []
    mirror.on_handoff(lambda key, reason: calls.append((key, reason)))
    mirror.on_resume(lambda key, reason: calls.append((key, reason)))
    agent = contract("chatwoot/webhooks/message_created.json")
    resolved = contract("chatwoot/webhooks/conversation_status_changed.json")
    assert handler.handle(signed(agent, delivery="d-1")).body["result"] == "paused"
    assert handler.handle(signed(resolved, delivery="d-2")).body["result"] == "resumed"
    replay = handler.handle(signed(agent, delivery="d-1"))
    assert (replay.status, replay.body["result"]) == (200, "duplicate")
    assert not mirror.is_paused(CONTACT)
    assert calls == [("wa-5511987654321", "agent_reply"), ("wa-5511987654321", "resolved")]


def test_stale_event_does_not_undo_a_newer_transition(handler, mirror):
    agent = contract("chatwoot/webhooks/message_created.json")          # 14:02:00
    resolved = contract("chatwoot/webhooks/conversation_status_changed.json")  # 14:05:00
    assigned = contract("chatwoot/webhooks/conversation_updated_assignee.json")  # 14:01:40
    assert handler.handle(signed(resolved)).status == 200  # arrives first
    assert handler.handle(signed(agent)).status == 200      # the older reply arrives late
    assert handler.handle(signed(assigned)).status == 200
    assert not mirror.is_paused(CONTACT)
    later = copy.deepcopy(agent)
    later["created_at"] = "2026-08-18T14:09:00.000Z"            # a genuinely newer reply
    handler.handle(signed(later))
    assert mirror.is_paused(CONTACT)


def test_bad_input_is_4xx_and_changes_nothing(handler, mirror):
    good = contract("chatwoot/webhooks/message_created.json")
    no_inbox = copy.deepcopy(good)
    del no_inbox["conversation"]["contact_inbox"]
    cases = [
        (b"{not json", 400),
        (b"[1, 2, 3]", 400),
        (b'{"no": "event"}', 400),
        (json.dumps(no_inbox).encode(), 400),
        (b"\xff\xfe\x00", 400),
        (b" " * (1024 * 1024 + 1), 413),
    ]
    for body, status in cases:
        assert handler.handle(signed(body)).status == status, body[:20]
    assert handler.handle(signed({"event": "something_new"})).body["result"] == "ignored"
    assert not mirror.is_paused(CONTACT)


def mutate(value, rng: random.Random):
    """Random structural damage to a real payload: drop keys, swap types, nest nonsense."""
    if isinstance(value, dict) and value:
        out = dict(value)
        key = rng.choice(sorted(out))
        choice = rng.random()
        if choice < 0.3:
            del out[key]
        elif choice < 0.8:
            out[key] = mutate(out[key], rng)
        else:
            out[key] = rng.choice([None, 0, -1, "", "x" * 300, [], {}, True, 1e308, "2026-99"])
        return out
    if isinstance(value, list) and value:
        return [mutate(value[0], rng)] + value[1:]
    return rng.choice([None, 0, "", [], {}, False, "outgoing", "user", 12.5])


def test_fuzzed_real_payloads_never_get_a_5xx(handler):
    rng = random.Random(1234)
    statuses = set()
    for _ in range(600):
        payload = contract(f"chatwoot/webhooks/{rng.choice(WEBHOOKS)}")
        for _ in range(rng.randint(1, 4)):
            payload = mutate(payload, rng)
        statuses.add(handler.handle(signed(payload)).status)
    assert max(statuses) < 500
    assert 400 in statuses and 200 in statuses


def test_fuzzed_bytes_without_a_valid_signature_change_nothing(handler, mirror):
    rng = random.Random(99)
    good = signed(contract("chatwoot/webhooks/message_created.json"))
    for _ in range(300):
        body = bytearray(good.body)
        for _ in range(rng.randint(1, 5)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        if bytes(body) == good.body:
            continue
        assert handler.handle(WebhookRequest(good.headers, bytes(body))).status == 401
    assert not mirror.is_paused(CONTACT)


# -- explicit handoff, idle resume --------------------------------------------------------------

def test_explicit_handoff_and_resume(mirror):
    assert not mirror.is_paused("+55 11 98765-4321")
    assert mirror.handoff("5511987654321@s.whatsapp.net", reason="user_request")
    assert mirror.is_paused("+55 (11) 98765-4321")
    assert not mirror.handoff(CONTACT)  # already with humans
    assert mirror.resume(CONTACT)
    assert not mirror.is_paused(CONTACT)
    assert [r.contact_key for r in mirror.handoff_state.paused()] == []


def test_idle_timeout_resumes_from_the_last_human_message(tmp_path):
    m = make_mirror(tmp_path, resume_after_minutes=20)
    handler = m.webhook_handler()
    reply = contract("chatwoot/webhooks/message_created.json")  # 14:02:00
    start = datetime(2026, 8, 18, 14, 2, tzinfo=timezone.utc)
    with freeze_time(start) as frozen:
        handler.handle(signed(reply))
        frozen.move_to(datetime(2026, 8, 18, 14, 15, tzinfo=timezone.utc))
        later = copy.deepcopy(reply)
        later["created_at"] = "2026-08-18T14:15:00.000Z"  # the agent wrote again
        handler.handle(signed(later))
        frozen.move_to(datetime(2026, 8, 18, 14, 30, tzinfo=timezone.utc))
        assert m.handoff_state.resume_idle() == 0  # 15 min after the last human message
        assert m.is_paused(CONTACT)
        frozen.move_to(datetime(2026, 8, 18, 14, 36, tzinfo=timezone.utc))
        assert m.handoff_state.resume_idle() == 1
        assert not m.is_paused(CONTACT)
    m.close(timeout=0)


def test_resume_on_unassign_is_an_option(tmp_path):
    unassigned = contract("chatwoot/webhooks/conversation_updated_assignee.json")
    unassigned["changed_attributes"][0]["assignee_id"] = {"previous_value": 3,
                                                          "current_value": None}
    unassigned["updated_at"] += 60
    unassigned["meta"]["assignee"] = None
    unassigned["meta"]["assignee_type"] = None
    for option, still_paused in ((False, True), (True, False)):
        m = make_mirror(tmp_path / str(option), resume_on_unassign=option)
        handler = m.webhook_handler()
        handler.handle(signed(contract("chatwoot/webhooks/conversation_updated_assignee.json")))
        handler.handle(signed(unassigned))
        assert m.is_paused(CONTACT) is still_paused
        m.close(timeout=0)


# -- Flask --------------------------------------------------------------------------------------

def test_flask_blueprint_only_translates(mirror):
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(mirror), url_prefix="/chatwoot")
    client = app.test_client()
    request = signed(contract("chatwoot/webhooks/message_created.json"))
    response = client.post("/chatwoot/webhook", data=request.body, headers=dict(request.headers))
    assert response.status_code == 200 and response.get_json()["result"] == "paused"
    assert mirror.is_paused(CONTACT)
    assert client.post("/chatwoot/webhook", data=b"{").status_code == 401  # unsigned
    bad = signed(b"{")
    assert client.post("/chatwoot/webhook", data=bad.body,
                       headers=dict(bad.headers)).status_code == 400
    big = b"x" * (1024 * 1024 + 10)
    assert client.post("/chatwoot/webhook", data=big).status_code == 413
    assert client.get("/chatwoot/webhook").status_code == 405


def test_local_decisions_do_not_make_later_chatwoot_events_stale(handler, mirror):
    """This host's clock may run ahead of Chatwoot's: a resume decided here must not make
    the agent's next reply (stamped by Chatwoot) look stale."""
    with freeze_time("2026-08-18 15:00:00"):  # host clock an hour ahead of Chatwoot's
        handler.handle(signed(contract("chatwoot/webhooks/message_created.json")))  # 14:02
        assert mirror.is_paused(CONTACT)
        assert mirror.resume(CONTACT)
        stale = contract("chatwoot/webhooks/message_created.json")  # the same reply again
        handler.handle(signed(stale))
        assert not mirror.is_paused(CONTACT)
        newer = contract("chatwoot/webhooks/message_created.json")
        newer["created_at"] = "2026-08-18T14:03:00.000Z"  # the agent writes again
        handler.handle(signed(newer))
        assert mirror.is_paused(CONTACT)
