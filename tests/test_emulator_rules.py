"""Each Chatwoot rule the emulator claims (research/chatwoot.md §1-§5) has a test here."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from typing import Any

import pytest
import requests

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.testing import FakeChatwoot, Faults


@pytest.fixture
def cw():
    with FakeChatwoot() as chatwoot:
        yield chatwoot


def public(cw: FakeChatwoot, method: str, path: str, **kwargs: Any) -> requests.Response:
    url = f"{cw.url}/public/api/v1/inboxes/{cw.inbox_identifier}{path}"
    return requests.request(method, url, timeout=5, **kwargs)


def app(cw: FakeChatwoot, method: str, path: str, token: str | None = None, **kwargs: Any):
    return requests.request(method, f"{cw.url}/api/v1/accounts/1{path}",
                            headers={"api_access_token": token or cw.bot_token}, timeout=5,
                            **kwargs)


def contact(cw, source_id="wa-1", **extra) -> dict:
    return public(cw, "POST", "/contacts", json={"source_id": source_id, **extra}).json()


def conversation(cw, source_id="wa-1") -> int:
    return public(cw, "POST", f"/contacts/{source_id}/conversations", json={}).json()["id"]


# -- contacts ---------------------------------------------------------------------------------

def test_source_id_makes_contact_create_idempotent_and_attributes_are_not_updated(cw):
    first = contact(cw, name="Maria")
    again = contact(cw, name="Outra")
    assert again["id"] == first["id"] and again["name"] == "Maria"
    assert again["pubsub_token"] == first["pubsub_token"]
    assert len(cw.contacts()) == 1


def test_without_source_id_every_create_makes_a_new_contact_inbox(cw):
    a = public(cw, "POST", "/contacts", json={"identifier": "55119"}).json()
    b = public(cw, "POST", "/contacts", json={"identifier": "55119"}).json()
    assert a["source_id"] != b["source_id"] and len(a["source_id"]) == 36  # random UUIDs
    assert a["id"] == b["id"]  # the Contact is reused by identifier, the contact_inbox is not
    assert len(cw.contacts()[0]["source_ids"]) == 2


def test_phone_number_must_be_e164(cw):
    r = public(cw, "POST", "/contacts", json={"source_id": "wa-1", "phone_number": "11 9876"})
    assert r.status_code == 422
    assert r.json() == {"message": "Phone number should be in e164 format",
                        "attributes": ["phone_number"]}


def test_bad_identifier_hash_is_a_500_and_mandatory_hmac_needs_one():
    with FakeChatwoot(hmac_token="inbox-hmac", hmac_mandatory=True) as cw:
        good = hmac.new(b"inbox-hmac", b"55119", hashlib.sha256).hexdigest()
        bad = public(cw, "POST", "/contacts", json={"source_id": "wa-1", "identifier": "55119",
                                                     "identifier_hash": "0" * 64})
        missing = public(cw, "POST", "/contacts", json={"source_id": "wa-1"})
        ok = public(cw, "POST", "/contacts", json={"source_id": "wa-1", "identifier": "55119",
                                                    "identifier_hash": good})
    assert (bad.status_code, missing.status_code, ok.status_code) == (500, 500, 200)
    assert bad.json() == {"status": 500, "error": "Internal Server Error"}


def test_unknown_inbox_source_id_or_conversation_is_rails_404(cw):
    contact(cw)
    conv = conversation(cw)
    foreign = contact(cw, "wa-2")["source_id"]
    for response in (
        requests.get(f"{cw.url}/public/api/v1/inboxes/nope/contacts/wa-1", timeout=5),
        public(cw, "GET", "/contacts/wa-unknown/conversations"),
        public(cw, "POST", f"/contacts/{foreign}/conversations/{conv}/messages",
               json={"content": "x"}),
    ):
        assert response.status_code == 404
        assert response.json() == {"status": 404, "error": "Not Found"}


# -- conversations ----------------------------------------------------------------------------

def test_conversation_list_is_unordered_and_includes_resolved(cw):
    contact(cw)
    ids = [conversation(cw) for _ in range(5)]
    cw.resolve(ids[0])
    orders = {tuple(c["id"] for c in public(cw, "GET", "/contacts/wa-1/conversations").json())
              for _ in range(20)}
    assert len(orders) > 1
    listed = public(cw, "GET", "/contacts/wa-1/conversations").json()
    assert {c["id"] for c in listed} == set(ids)
    assert {c["status"] for c in listed} == {"open", "resolved"}


def test_without_lock_every_post_creates_a_conversation(cw):
    contact(cw)
    assert len({conversation(cw) for _ in range(3)}) == 3


def test_lock_to_single_conversation_returns_the_latest_even_resolved():
    with FakeChatwoot(lock_to_single_conversation=True) as cw:
        contact(cw)
        first = conversation(cw)
        cw.resolve(first)
        assert conversation(cw) == first
        assert len(cw.conversations()) == 1


def test_active_bot_starts_conversations_pending_with_the_bot_assigned():
    with FakeChatwoot(bot_active=True) as cw:
        contact(cw)
        assert cw.conversations() == []  # a contact alone opens nothing
        cid = conversation(cw)
        data = cw.conversations()[0]
        assert data["id"] == cid and data["status"] == "pending"
        assert data["meta"]["assignee_type"] == "AgentBot"


@pytest.mark.parametrize("bot_active,before,after",
                         [(False, "resolved", "open"), (True, "resolved", "pending"),
                          (False, "snoozed", "open")])
def test_incoming_message_reopens(bot_active, before, after):
    with FakeChatwoot(bot_active=bot_active) as cw:
        contact(cw)
        cid = conversation(cw)
        cw.set_status(cid, before)
        public(cw, "POST", f"/contacts/wa-1/conversations/{cid}/messages", json={"content": "oi"})
        assert cw.conversations()[0]["status"] == after


def test_public_toggle_status_only_resolves(cw):
    contact(cw)
    cid = conversation(cw)
    path = f"/contacts/wa-1/conversations/{cid}/toggle_status"
    assert public(cw, "POST", path).json()["status"] == "resolved"
    assert public(cw, "POST", path).json()["status"] == "resolved"  # cannot reopen


def test_bot_handoff_and_human_assignment_leave_pending():
    with FakeChatwoot(bot_active=True) as cw:
        contact(cw)
        a, b = conversation(cw), conversation(cw)
        app(cw, "POST", f"/conversations/{a}/toggle_status", json={"status": "open"})
        app(cw, "POST", f"/conversations/{b}/assignments", json={"assignee_id": 3})
        statuses = {c["id"]: c["status"] for c in cw.conversations()}
        assert statuses == {a: "open", b: "open"}
        assert cw.conversations()[0]["meta"]["assignee_type"] is None


# -- messages ---------------------------------------------------------------------------------

def test_public_messages_are_always_incoming_from_the_contact(cw):
    contact(cw)
    cid = conversation(cw)
    r = public(cw, "POST", f"/contacts/wa-1/conversations/{cid}/messages",
               json={"content": "eu sou o bot", "message_type": "outgoing", "is_bot": True,
                     "source_id": "x"})
    assert r.json()["message_type"] == 0 and r.json()["sender"]["type"] == "contact"
    assert cw.messages()[0]["source_id"] is None


def test_content_over_150000_characters_is_422(cw):
    contact(cw)
    cid = conversation(cw)
    r = public(cw, "POST", f"/contacts/wa-1/conversations/{cid}/messages",
               json={"content": "a" * 150_001})
    assert r.status_code == 422 and "too long" in r.json()["message"]


def test_flood_guard_after_limit_messages_a_minute():
    with FakeChatwoot(flood_limit=3) as cw:
        contact(cw)
        cid = conversation(cw)
        codes = [public(cw, "POST", f"/contacts/wa-1/conversations/{cid}/messages",
                        json={"content": str(i)}).status_code for i in range(4)]
        assert codes == [200, 200, 200, 422]


def test_messages_index_returns_latest_20_oldest_first_without_private(cw):
    contact(cw)
    cid = conversation(cw)
    for i in range(25):
        public(cw, "POST", f"/contacts/wa-1/conversations/{cid}/messages", json={"content": str(i)})
    cw.private_note(cid, "nota")
    page = public(cw, "GET", f"/contacts/wa-1/conversations/{cid}/messages").json()
    assert [m["content"] for m in page] == [str(i) for i in range(5, 25)]
    older = public(cw, "GET", f"/contacts/wa-1/conversations/{cid}/messages",
                   params={"before": page[0]["id"]}).json()
    assert [m["content"] for m in older] == [str(i) for i in range(5)]


def test_application_api_stores_source_id_and_content_attributes(cw):
    contact(cw)
    cid = conversation(cw)
    r = app(cw, "POST", f"/conversations/{cid}/messages",
            json={"content": "x", "message_type": "incoming", "source_id": "cwm:1",
                  "content_attributes": {"chatwoot_mirror": {"key": "1"}}}).json()
    assert r["message_type"] == 0 and r["sender"]["type"] == "contact"
    assert r["source_id"] == "cwm:1"
    listed = public(cw, "GET", f"/contacts/wa-1/conversations/{cid}/messages").json()
    assert listed[-1]["content_attributes"] == {"chatwoot_mirror": {"key": "1"}}


def test_multipart_attachments(cw):
    contact(cw)
    cid = conversation(cw)
    r = public(cw, "POST", f"/contacts/wa-1/conversations/{cid}/messages",
               data={"content": "foto"},
               files=[("attachments[]", ("a.jpg", b"\xff\xd8jpeg", "image/jpeg"))])
    attachment = r.json()["attachments"][0]
    assert attachment["file_type"] == "image" and attachment["file_size"] == 6


# -- tokens, limits, faults -------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [("GET", "/agents"), ("GET", "/inboxes/7")])
def test_bot_token_is_refused_outside_bot_endpoints(cw, method, path):
    r = app(cw, method, path)
    assert r.status_code == 401
    assert r.json() == {"error": "Access to this endpoint is not authorized for bots"}
    assert app(cw, method, path, token=cw.user_token).status_code == 200


def test_agents_list_shows_availability(cw):
    agents = app(cw, "GET", "/agents", token=cw.user_token).json()
    assert {a["availability_status"] for a in agents} == {"online", "offline"}


def test_message_status_update_user_token_and_read_never_goes_back(cw):
    contact(cw)
    cid = conversation(cw)
    mid = cw.agent_reply(cid, "olá")["id"]
    path = f"/conversations/{cid}/messages/{mid}"
    assert app(cw, "PATCH", path, token=cw.user_token, json={"status": "read"}).status_code == 200
    r = app(cw, "PATCH", path, token=cw.user_token, json={"status": "delivered"})
    assert r.json()["status"] == "read"


def test_labels_and_custom_attributes_replace_the_whole_set(cw):
    contact(cw)
    cid = conversation(cw)
    app(cw, "POST", f"/conversations/{cid}/labels", json={"labels": ["a", "b"]})
    assert app(cw, "POST", f"/conversations/{cid}/labels", json={"labels": ["c"]}).json() == {
        "payload": ["c"]}
    app(cw, "POST", f"/conversations/{cid}/custom_attributes",
        json={"custom_attributes": {"x": 1}})
    r = app(cw, "POST", f"/conversations/{cid}/custom_attributes",
            json={"custom_attributes": {"y": 2}})
    assert r.json() == {"custom_attributes": {"y": 2}}


def test_global_rate_limit_is_a_bare_429():
    with FakeChatwoot(faults=Faults(rate_limit_per_minute=2)) as cw:
        codes = [public(cw, "GET", "").status_code for _ in range(3)]
        last = public(cw, "GET", "")
    assert codes == [200, 200, 429]
    # rack-attack's default throttled_responder (lib/rack/attack/configuration.rb)
    assert last.text == "Retry later\n" and last.headers["Content-Type"] == "text/plain"
    assert "Retry-After" not in last.headers


def test_commit_then_drop_creates_the_message_but_never_answers(cw):
    contact(cw)
    cid = conversation(cw)
    cw.faults.drop_after_commit_rate = 1.0
    with pytest.raises(requests.ConnectionError):
        public(cw, "POST", f"/contacts/wa-1/conversations/{cid}/messages", json={"content": "x"})
    cw.faults.drop_after_commit_rate = 0.0
    assert [m["content"] for m in cw.messages()] == ["x"]


def test_outage_window_and_error_rate(cw):
    import time

    cw.faults.outages = [(time.time(), time.time() + 60)]
    assert public(cw, "GET", "").status_code == 503
    cw.faults.outages = []
    cw.faults.error_rate = 1.0
    assert public(cw, "GET", "").status_code == 500


# -- the mirror, end to end on the emulator ---------------------------------------------------

def mirror_config(cw: FakeChatwoot, tmp_path, **extra) -> Config:
    values = dict(url=cw.url, inbox_identifier=cw.inbox_identifier,
                  db_path=str(tmp_path / "m.db"), max_requests_per_minute=0)
    values.update(extra)
    return Config(**values)


def test_mirror_end_to_end_bot_replies_are_authored_by_the_bot(cw, tmp_path):
    config = mirror_config(cw, tmp_path, account_id=1, bot_token=cw.bot_token)
    with Mirror(config) as mirror:
        mirror.log_exchange("+55 (11) 98765-4321", "Oi", "Olá!", sender_name="Maria")
        mirror.log_exchange("5511987654321@s.whatsapp.net", "Tudo bem?", "Sim!")
        assert mirror.flush()
    [conv] = cw.conversations()
    assert conv["meta"]["sender"]["phone_number"] == "+5511987654321"
    assert conv["meta"]["sender"]["name"] == "Maria"
    authored = [(m["content"], m["message_type"], m["sender"]["type"]) for m in cw.messages()]
    assert authored == [("Oi", 0, "contact"), ("Olá!", 1, "agent_bot"),
                        ("Tudo bem?", 0, "contact"), ("Sim!", 1, "agent_bot")]


def test_mirror_end_to_end_without_bot_token(cw, tmp_path):
    with Mirror(mirror_config(cw, tmp_path)) as mirror:
        mirror.log_exchange("5511987654321", "Oi", "Olá!")
    assert [(m["content"], m["message_type"]) for m in cw.messages()] == [
        ("Oi", 0), ("🤖 Olá!", 0)]


def test_mirror_end_to_end_concurrent_first_messages_one_conversation(tmp_path):
    with FakeChatwoot(faults=Faults(latency=0.02)) as cw:
        mirror = Mirror(mirror_config(cw, tmp_path, account_id=1, bot_token=cw.bot_token))
        barrier = threading.Barrier(10)

        def first(i: int) -> None:
            barrier.wait()
            mirror.log_exchange("5511987654321", f"q{i}", f"a{i}")

        threads = [threading.Thread(target=first, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert mirror.flush(30)
        mirror.close()
        assert len(cw.conversations()) == 1
        assert len(cw.messages()) == 20
        creates = [r for r in cw.requests if r[0] == "POST" and r[1].endswith("/contacts")]
        assert len(creates) == 1


def test_the_readme_fixture_example(fake_chatwoot, tmp_path):
    """The `fake_chatwoot` fixture comes from the installed pytest plugin (entry point)."""
    config = Config(url=fake_chatwoot.url, inbox_identifier=fake_chatwoot.inbox_identifier,
                    account_id=fake_chatwoot.account_id, bot_token=fake_chatwoot.bot_token,
                    db_path=str(tmp_path / "mirror.db"))
    with Mirror(config) as mirror:
        mirror.log_exchange("+55 11 98765-4321", "Oi", "Olá! Como posso ajudar?")
        assert mirror.flush()
    assert [m["content"] for m in fake_chatwoot.messages()] == ["Oi", "Olá! Como posso ajudar?"]


def test_standalone_emulator_prints_its_settings_and_serves(tmp_path):
    import subprocess
    import sys
    import time

    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatwoot_mirror.testing", "--port", "0", "--inbox-identifier",
         "cli-inbox", "--port-file", str(port_file)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 20
        while not (port_file.exists() and port_file.read_text()) and time.time() < deadline:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}/public/api/v1/inboxes/cli-inbox"
        assert requests.get(url, timeout=5).json()["identifier"] == "cli-inbox"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "inbox identifier" in out and "cli-inbox" in out
    assert "bot token" in out and "(random)" in out  # defaults are shown when not given
    assert "lock to single conversation" in out


def test_a_request_cut_off_mid_body_is_never_handled():
    """A host killed while sending: the web server in front of Rails never passes half a
    body on, so no message is created from it (a truncated JSON once became an empty
    message in the kill -9 test)."""
    import socket
    from urllib.parse import urlsplit

    with FakeChatwoot() as cw:
        contact = public(cw, "POST", "/contacts", json={"source_id": "wa-cut"}).json()
        conv = public(cw, "POST", "/contacts/wa-cut/conversations").json()
        assert contact["source_id"] == "wa-cut"
        body = json.dumps({"content": "half of this never arrives",
                           "message_type": "incoming"}).encode()
        path = f"/api/v1/accounts/1/conversations/{conv['id']}/messages"
        parts = urlsplit(cw.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         f"\r\napi_access_token: {cw.bot_token}"
                         f"\r\nContent-Length: {len(body)}\r\n\r\n".encode())  # killed here
            sock.shutdown(socket.SHUT_WR)
            sock.recv(100)
        assert cw.messages(conv["id"]) == []
