"""Z-PRO adapter (inferred shapes, see integrations/zpro.py): every contract file, sends, echoes."""

from __future__ import annotations

import json

import pytest
import responses
from conftest import CONTRACTS, contract
from responses import matchers

from chatwoot_mirror.integrations.base import ECHO, MESSAGE, OWNER, STATUS
from chatwoot_mirror.integrations.zpro import ZproAdapter

BASE = "https://api.zpro.example.com"
SEND = f"{BASE}/v2/api/external/api-123"

WEBHOOKS = {
    "whaticket_saas_connection_webhook_message.json": [
        (MESSAGE, "5511988887777", "Quero a segunda via do boleto", None)],
    "izing_hook_message_status.json": [(STATUS, "5511988887777", "", "read")],
    "izing_hook_message_status_invalid_number.json": [(STATUS, "5511988887777", "", "failed")],
    "izing_hook_session_status.json": [],
    # issue #17's kinds, as Whaticket's getBodyMessage words them (see test_message_kinds)
    "whaticket_message_vcard.json": [(MESSAGE, "5511988887777", "Carlos Lima +55 11 96666-5555",
                                      None)],
    "whaticket_message_location.json": [
        (MESSAGE, "5511988887777", "https://maps.google.com/?q=-23.5613991,-46.6565712", None)],
    "whaticket_message_without_text.json": [(MESSAGE, "5511988887777", "", None)],
}
API_FILES = {
    "zpro_api_send_text_request.json", "zpro_api_send_text_response_izing.json",
    "zpro_api_set_ticket_info_request.json", "zpro_api_show_ticket_request.json",
}


@pytest.fixture
def adapter() -> ZproAdapter:
    return ZproAdapter(BASE, "api-123", "jwt-token", webhook_secret="s3cret")


def raw(name: str) -> bytes:
    return (CONTRACTS / "zpro" / name).read_bytes()


def test_every_contract_file_is_covered():
    assert {p.name for p in (CONTRACTS / "zpro").glob("*.json")} == set(WEBHOOKS) | API_FILES


@pytest.mark.parametrize("name", sorted(WEBHOOKS))
def test_webhook_parsed(adapter, name):
    got = [(e.kind, e.contact, e.text, e.status) for e in adapter.parse({}, raw(name))]
    assert got == WEBHOOKS[name]


@pytest.mark.parametrize("name", sorted(API_FILES))
def test_api_bodies_are_no_events(adapter, name):
    assert adapter.parse({}, raw(name)) == []


def test_message_details(adapter):
    [event] = adapter.parse({}, raw("whaticket_saas_connection_webhook_message.json"))
    assert event.name == "Maria Souza"
    again = adapter.parse({}, raw("whaticket_saas_connection_webhook_message.json"))[0]
    assert event.message_id == again.message_id  # a redelivery is recognisable
    later = contract("zpro/whaticket_saas_connection_webhook_message.json")
    later["ticketData"]["updatedAt"] = "2026-01-01T12:01:00.000Z"
    assert adapter.parse({}, json.dumps(later).encode())[0].message_id != event.message_id


def test_status_carries_our_external_key_and_error(adapter):
    [failed] = adapter.parse({}, raw("izing_hook_message_status_invalid_number.json"))
    assert failed.message_id == "chatwoot-mirror-4711"
    # Izing's ack -1, as a code the mirror explains, then Z-PRO's own words
    assert (failed.status, failed.error) == ("failed",
                                             "invalid_number number invalid in whatsapp")


@responses.activate
def test_send_text_request_and_echo_recognition(adapter):
    example = contract("zpro/zpro_api_send_text_request.json")
    responses.post(SEND, json=contract("zpro/zpro_api_send_text_response_izing.json"),
                   match=[matchers.header_matcher({"Authorization": "Bearer jwt-token"})])
    key = adapter.send_text("5511988887777", example["body"])
    sent = json.loads(responses.calls[0].request.body)
    assert set(sent) == set(example)
    assert {k: sent[k] for k in ("body", "number", "isClosed")} == {
        k: example[k] for k in ("body", "number", "isClosed")}
    assert sent["externalKey"] == key and key.startswith("chatwoot-mirror-")

    echo = contract("zpro/whaticket_saas_connection_webhook_message.json")
    echo.update(fromMe=True, mensagem=example["body"])
    assert adapter.parse({}, json.dumps(echo).encode())[0].kind == ECHO
    # the same text again was not sent by us this time: a person typed it in Z-PRO
    assert adapter.parse({}, json.dumps(echo).encode())[0].kind == OWNER


@responses.activate
def test_send_media_by_url(adapter):
    responses.post(f"{SEND}/url", json={"message": "Message add queue"})
    adapter.send_media("5511988887777", "https://files.example.com/a.pdf", "application/pdf",
                       caption="Seu boleto")
    sent = json.loads(responses.calls[0].request.body)
    assert sent["mediaUrl"] == "https://files.example.com/a.pdf"
    assert sent["body"] == "Seu boleto" and sent["number"] == "5511988887777"


def test_configurable_paths():
    adapter = ZproAdapter(BASE, "x", "t", send_path="/v1/api/external/{api_id}", insecure=True)
    assert adapter._url(adapter.send_path) == f"{BASE}/v1/api/external/x"


def test_verify_needs_the_url_token(adapter):
    assert adapter.verify({}, b"{}", {"token": "s3cret"})
    assert not adapter.verify({}, b"{}", {"token": "nope"})
    assert not ZproAdapter(BASE, "a", "t").verifies


@pytest.mark.parametrize("body", [b"x", b"{}", b'{"type": "other"}', b'{"mensagem": "a"}',
                                  b'{"mensagem": "a", "sender": "1", "isGroup": true}'])
def test_unknown_shapes_are_skipped(adapter, body):
    assert adapter.parse({}, body) == []
