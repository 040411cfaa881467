"""The emulator against Chatwoot's own contracts: swagger schemas, response and webhook shapes."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
import requests
from conftest import contract
from jsonschema import Draft202012Validator
from webhook_sink import WebhookSink

from chatwoot_mirror.testing import FakeChatwoot

SWAGGER = "chatwoot/swagger/tag_groups/client_swagger.json"
PREFIX = "/public/api/v1/inboxes/{inbox_identifier}"


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def assert_same_shape(ours: Any, theirs: Any, path: str = "$") -> None:
    """Same keys at every level, same value types where both sides have a value (null is
    accepted on either side: Chatwoot's nullable fields), lists compared by their first item."""
    if theirs is None or ours is None:
        return
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{path}: {type(ours).__name__} instead of object"
        if ours.get("type") != theirs.get("type"):
            return  # polymorphic senders (user / agent_bot / contact): compare like with like
        assert set(ours) == set(theirs), (
            f"{path}: missing {sorted(set(theirs) - set(ours))}, "
            f"extra {sorted(set(ours) - set(theirs))}"
        )
        for key in theirs:
            assert_same_shape(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list), f"{path}: not a list"
        if ours and theirs:
            assert_same_shape(ours[0], theirs[0], f"{path}[0]")
    elif isinstance(theirs, bool) or isinstance(ours, bool):
        assert type(ours) is type(theirs), f"{path}: {type(ours).__name__} vs bool"
    elif isinstance(theirs, (int, float)):
        assert isinstance(ours, (int, float)) and not isinstance(ours, bool), path
        assert isinstance(ours, float) == isinstance(theirs, float), (
            f"{path}: {type(ours).__name__} instead of {type(theirs).__name__}"
        )
    else:
        assert type(ours) is type(theirs), f"{path}: {type(ours).__name__} vs {type(theirs)}"


@pytest.fixture(scope="module")
def swagger() -> dict[str, Any]:
    return contract(SWAGGER)


def validator(swagger: dict[str, Any], method: str, template: str) -> Draft202012Validator:
    op = swagger["paths"][PREFIX + template][method.lower()]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": swagger["components"]})


@pytest.fixture
def sink():
    s = WebhookSink()
    yield s
    s.close()


@pytest.fixture
def cw(sink):
    with FakeChatwoot(webhook_url=sink.url, webhook_secret="hook-secret") as chatwoot:
        yield chatwoot


def public(cw: FakeChatwoot, method: str, path: str, **kwargs: Any) -> requests.Response:
    url = f"{cw.url}/public/api/v1/inboxes/{cw.inbox_identifier}{path}"
    return requests.request(method, url, timeout=5, **kwargs)


def app(cw: FakeChatwoot, method: str, path: str, token: str | None = None, **kwargs: Any):
    headers = {"api_access_token": token or cw.bot_token}
    return requests.request(method, f"{cw.url}/api/v1/accounts/1{path}", headers=headers,
                            timeout=5, **kwargs)


def seed(cw: FakeChatwoot) -> tuple[str, int]:
    public(cw, "POST", "/contacts", json={"source_id": "wa-5511987654321", "name": "Maria Silva",
                                          "phone_number": "+5511987654321",
                                          "identifier": "5511987654321"})
    conv = public(cw, "POST", "/contacts/wa-5511987654321/conversations", json={}).json()
    public(cw, "POST", f"/contacts/wa-5511987654321/conversations/{conv['id']}/messages",
           json={"content": "Oi, quero saber do meu pedido"})
    return "wa-5511987654321", conv["id"]


def test_public_responses_validate_against_the_client_swagger(cw, swagger):
    source, conv = seed(cw)
    cw.agent_reply(conv, "Olá Maria")
    base = f"/contacts/{source}/conversations/{conv}"
    checks = [
        ("POST", "/contacts", "/contacts", {"json": {"source_id": "wa-1", "name": "X"}}),
        ("GET", "/contacts/{contact_identifier}", f"/contacts/{source}", {}),
        ("PATCH", "/contacts/{contact_identifier}", f"/contacts/{source}",
         {"json": {"name": "Maria S."}}),
        ("POST", "/contacts/{contact_identifier}/conversations",
         f"/contacts/{source}/conversations", {"json": {}}),
        ("GET", "/contacts/{contact_identifier}/conversations",
         f"/contacts/{source}/conversations", {}),
        ("GET", "/contacts/{contact_identifier}/conversations/{conversation_id}", base, {}),
        ("POST", "/contacts/{contact_identifier}/conversations/{conversation_id}/messages",
         f"{base}/messages", {"json": {"content": "mais uma"}}),
        ("GET", "/contacts/{contact_identifier}/conversations/{conversation_id}/messages",
         f"{base}/messages", {}),
        ("POST", "/contacts/{contact_identifier}/conversations/{conversation_id}/toggle_status",
         f"{base}/toggle_status", {}),
    ]
    for method, template, path, kwargs in checks:
        response = public(cw, method, path, **kwargs)
        assert response.status_code == 200, (method, path)
        errors = list(validator(swagger, method, template).iter_errors(response.json()))
        assert not errors, (method, template, [e.message for e in errors])


@pytest.mark.parametrize(
    "name,call",
    [
        ("contact_create_response.json", lambda cw, s, c: public(
            cw, "POST", "/contacts", json={"source_id": s})),
        ("conversation_create_response.json", lambda cw, s, c: public(
            cw, "POST", f"/contacts/{s}/conversations", json={})),
        ("conversations_index_response.json", lambda cw, s, c: public(
            cw, "GET", f"/contacts/{s}/conversations")),
        ("message_create_response.json", lambda cw, s, c: public(
            cw, "POST", f"/contacts/{s}/conversations/{c}/messages", json={"content": "x"})),
        ("messages_index_response.json", lambda cw, s, c: public(
            cw, "GET", f"/contacts/{s}/conversations/{c}/messages")),
        ("inbox_show_response.json", lambda cw, s, c: public(cw, "GET", "")),
    ],
)
def test_public_responses_have_the_contract_shapes(cw, name, call):
    source, conv = seed(cw)
    cw.agent_reply(conv, "Olá Maria")
    response = call(cw, source, conv)
    assert response.status_code == 200
    assert_same_shape(response.json(), contract(f"chatwoot/public_api/{name}"))


def test_application_responses_and_errors_have_the_contract_shapes(cw):
    _, conv = seed(cw)
    created = app(cw, "POST", f"/conversations/{conv}/messages",
                  json={"content": "Claro!", "source_id": "cwm:1"})
    assert_same_shape(created.json(),
                      contract("chatwoot/application_api/message_create_response_agent_bot.json"))
    assert created.json()["sender"]["type"] == "agent_bot"
    toggled = app(cw, "POST", f"/conversations/{conv}/toggle_status", json={"status": "open"})
    assert_same_shape(toggled.json(),
                      contract("chatwoot/application_api/toggle_status_response.json"))
    labels = app(cw, "POST", f"/conversations/{conv}/labels", json={"labels": ["bot", "pedido"]})
    assert labels.json() == contract("chatwoot/application_api/labels_response.json")
    attrs = app(cw, "POST", f"/conversations/{conv}/custom_attributes",
                json={"custom_attributes": {"bot_paused": True, "order_id": "A-1029"}})
    assert attrs.json() == contract("chatwoot/application_api/custom_attributes_response.json")
    errors = [
        (app(cw, "PATCH", f"/conversations/{conv}/messages/1", json={"status": "read"}),
         401, "error_bot_not_allowed_401.json"),
        (app(cw, "POST", f"/conversations/{conv}/messages", token="nope", json={}),
         401, "error_invalid_token_401.json"),
        (app(cw, "POST", "/conversations/999/messages", json={"content": "x"}),
         404, "error_not_found_404.json"),
    ]
    for response, status, name in errors:
        assert response.status_code == status
        assert response.json() == contract(f"chatwoot/application_api/{name}")


def test_every_webhook_has_the_contract_shape_and_a_valid_signature(cw, sink):
    source, conv = seed(cw)                                             # incoming, created
    cw.template_message(conv, "Estamos fora do horário")               # sender: null
    app(cw, "POST", f"/conversations/{conv}/messages",
        json={"content": "Claro!", "source_id": "cwm:abc"})           # our bot's echo
    cw.assign(conv, 3)                                                  # takeover signal
    cw.agent_reply(conv, "Olá Maria, sou a Ana.")
    cw.private_note(conv, "cliente VIP")
    app(cw, "POST", f"/conversations/{conv}/toggle_typing_status", token=cw.user_token,
        json={"typing_status": "on"})
    app(cw, "POST", f"/conversations/{conv}/toggle_typing_status", token=cw.user_token,
        json={"typing_status": "off"})
    cw.resolve(conv)
    assert cw.wait_for_webhooks()
    events = sink.events()

    def pick(event: str, **where: Any) -> dict[str, Any]:
        for e in events:
            if e["event"] == event and all(
                (e.get(k) if not callable(v) else None) == v or (callable(v) and v(e))
                for k, v in where.items()
            ):
                return e
        raise AssertionError(f"no {event} {where}")

    sender_type = lambda t: (lambda e: (e.get("sender") or {}).get("type") == t)  # noqa: E731
    expected = {
        "message_created.json": pick("message_created", private=False, m=sender_type("user")),
        "message_created_incoming.json": pick("message_created", message_type="incoming"),
        "message_created_agent_bot.json": pick("message_created", m=sender_type("agent_bot")),
        "message_created_private_note.json": pick("message_created", private=True),
        "message_created_template.json": pick("message_created", message_type="template"),
        "conversation_created.json": pick("conversation_created"),
        "conversation_status_changed.json": pick("conversation_status_changed"),
        "conversation_updated.json": pick(
            "conversation_updated",
            m=lambda e: any("status" in c for c in e["changed_attributes"])),
        "conversation_updated_assignee.json": pick(
            "conversation_updated",
            m=lambda e: any("assignee_id" in c for c in e["changed_attributes"])),
        "conversation_typing_on.json": pick("conversation_typing_on"),
        "conversation_typing_off.json": pick("conversation_typing_off"),
    }
    for name, ours in expected.items():
        assert_same_shape(ours, contract(f"chatwoot/webhooks/{name}"), name)
    bot = expected["message_created_agent_bot.json"]
    assert bot["source_id"] == "cwm:abc" and bot["message_type"] == "outgoing"
    assert expected["message_created_incoming.json"]["sender"].get("type") is None
    assert expected["conversation_status_changed.json"]["changed_attributes"] is None
    for headers, body in sink.received:
        stamp = headers["X-Chatwoot-Timestamp"]
        digest = hmac.new(b"hook-secret", f"{stamp}.".encode() + body, hashlib.sha256)
        assert headers["X-Chatwoot-Signature"] == f"sha256={digest.hexdigest()}"
        assert headers["X-Chatwoot-Delivery"]
        assert headers["Content-Type"] == "application/json"
    assert len({h["X-Chatwoot-Delivery"] for h, _ in sink.received}) == len(sink.received)


def test_failed_agent_webhook_marks_the_message_failed(cw, sink):
    _, conv = seed(cw)
    assert cw.wait_for_webhooks()
    sink.status = 500
    reply = cw.agent_reply(conv, "Olá")
    assert cw.wait_for_webhooks()
    sink.status = 200
    updated = sink.wait_for("message_updated")
    assert updated[-1]["id"] == reply["id"]
    assert updated[-1]["content_attributes"]["external_error"].startswith("500")
    assert_same_shape(updated[-1], contract("chatwoot/webhooks/message_updated.json"))
    assert [m for m in cw.messages(conv) if m["id"] == reply["id"]][0]["status"] == "failed"


def test_unsigned_without_secret_but_delivery_id_always(sink):
    with FakeChatwoot(webhook_url=sink.url) as cw:
        seed(cw)
        assert cw.wait_for_webhooks()
    headers = [h for h, _ in sink.received]
    assert headers and all("X-Chatwoot-Signature" not in h for h in headers)
    assert all(h["X-Chatwoot-Delivery"] for h in headers)


def test_webhook_payloads_never_include_more_than_json(cw, sink):
    seed(cw)
    assert cw.wait_for_webhooks()
    for _, body in sink.received:
        json.loads(body)
