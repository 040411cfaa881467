"""uazapi adapter: the real (flat) webhook captures, and requests valid against uazapiGO's spec."""

from __future__ import annotations

import base64
import json

import pytest
import responses
from conftest import CONTRACTS, contract
from jsonschema import Draft202012Validator
from responses import matchers

from chatwoot_mirror.identity import ContactIdentity
from chatwoot_mirror.integrations import ProviderError, ProviderRejected
from chatwoot_mirror.integrations.base import ECHO, INTEGRATION, MESSAGE, OWNER, STATUS
from chatwoot_mirror.integrations.uazapi import UazapiAdapter
from chatwoot_mirror.media import MediaRef, MediaTooLarge
from chatwoot_mirror.relay import AgentMessage

BASE = "https://example.uazapi.com"
TOKEN = "00000000-0000-4000-8000-000000000001"  # the instance token in the captures
CHAT = "5511988887777@s.whatsapp.net"

# file -> (kind, contact, text, message id, raw_type, attachment kinds, expects_reply)
WEBHOOKS = {
    "uazapi_text.json": [(MESSAGE, CHAT, "Oi, vocês entregam no sábado?",
                          "AC98212CD4909DE6799E78D93A824A3F", "text", [], True)],
    "uazapi_text_conversation.json": [(MESSAGE, CHAT, "Bom dia",
                                       "A5F1C2D3E4B5A6978812345678ABCDEF", "text", [], True)],
    "uazapi_fromme.json": [(OWNER, CHAT, "Já te respondo, um minuto",
                            "ACF3BAA609D967CF59AF1F4A8CE59202", "text", [], True)],
    "uazapi_fromme_api.json": [(ECHO, CHAT, "Olá! Recebemos sua mensagem e já vamos te atender.",
                                "3EB0A1B2C3D4E5F6A7B8C9", "text", [], True)],
    "uazapi_group.json": [],
    "uazapi_image.json": [(MESSAGE, CHAT, "Foto do produto com defeito",
                           "AC3D4FE37D20ED8957FACCDAD9368A4A", "image", ["image"], True)],
    "uazapi_audio_ptt.json": [(MESSAGE, CHAT, "", "AC0618B4C57918C5D25431E1AF47B2E7", "ptt",
                               ["audio"], True)],
    "uazapi_document.json": [(MESSAGE, CHAT, "", "AC32D9B3800862E9428A9B580162D209",
                              "document", ["document"], True)],
    "uazapi_video.json": [(MESSAGE, CHAT, "", "ACAC14245367A932CD6EF160D898A1C2", "video",
                           ["video"], True)],
    "uazapi_sticker.json": [(MESSAGE, CHAT, "", "AC7ABC519EB9D1ED9D0DEECFA063B074",
                             "user_created_sticker", ["sticker"], True)],
    "uazapi_location.json": [(MESSAGE, CHAT, "https://maps.google.com/?q=-8.0342513,-34.8921449",
                              "ACB8C2F16A8BC25A41D600B47924061A", "location", [], True)],
    "uazapi_contact_vcard.json": [(MESSAGE, CHAT,
                                   "Carlos Lima\nPhone (Celular): +55 11 96666-5555",
                                   "ACE22A6BF48566AFCFF27BFC5B42B85C", "vcard", ["document"],
                                   True)],
    "uazapi_reaction.json": [(MESSAGE, CHAT, "❤️", "ACA560BBE49219D22145948EA04BADDE",
                              "reaction", [], False)],
    "uazapi_list_response.json": [(MESSAGE, CHAT, "Fones", "AC733E28316A85E2435B1A9D4B6C39F7",
                                   "list_response", [], True)],
    "uazapi_text_edited.json": [(MESSAGE, CHAT, "Oi2",
                                 "ACF9A02835425A416EFC8AEDFCF1DD48", "text", [], False)],
    "uazapi_poll_vote.json": [(MESSAGE, CHAT, "Sábado de manhã",
                               "AC1A4B00110B41F932AE961FB23E1353", "poll", [], True)],
    "uazapi_fromme_other_integration.json": [
        (INTEGRATION, CHAT, "Black Friday: 20% em tudo até domingo!", "3EB0C0FFEE0000000000AA",
         "text", [], True)],
    "uazapi_order.json": [(MESSAGE, CHAT, "Loja Exemplo (3)\nTotal: BRL 159.30\n"
                           "Entrega no sábado?", "AC0RDER00000000000000000000000001",
                           "text", [], True)],
    "uazapi_product.json": [(MESSAGE, CHAT, "Camiseta azul M\nBRL 59.90\n"
                             "https://loja.example.com/camiseta-azul-m\nTem no tamanho G?",
                             "AC0PRODUCT000000000000000000000001", "text", [], True)],
    "uazapi_messages_update.json": [
        (STATUS, CHAT, "", "3EB0A1B2C3D4E5F6A7B8C9", "receipt", [], True),
        (STATUS, CHAT, "", "3EB0D4C3B2A1F6E5D4C3B2", "receipt", [], True)],
    "uazapi_connection_connected.json": [],
    "uazapi_connection_disconnected.json": [],
}
# file -> (shown_as, reply_to) of each event: how agents read it, and which message it
# concerns (the captures' own ids: quoted, reaction, edited)
SHOWN = {
    "uazapi_contact_vcard.json": [("contacts", None)],
    "uazapi_location.json": [("location", None)],
    "uazapi_sticker.json": [("sticker", None)],
    "uazapi_reaction.json": [("reaction", "AC24A7E68360C7E9A54F64AB85FAECE2")],
    "uazapi_text_edited.json": [("edit", "AC98212CD4909DE6799E78D93A824A3F")],
    "uazapi_list_response.json": [(None, "3EB00EB51811DEDC4195E4")],
    "uazapi_poll_vote.json": [("poll", "AC80C0232690BC1ADD4D087D31ED59B3")],
    "uazapi_order.json": [("order", None)],
    "uazapi_product.json": [("product", None)],
}
API_FILES = {
    "uazapi-openapi.json", "uazapi_send_text_request.json", "uazapi_send_text_response.json",
    "uazapi_send_media_request.json", "uazapi_send_media_response.json",
    "uazapi_send_error_400.json", "uazapi_send_error_401.json",
    "uazapi_message_download_request.json", "uazapi_message_download_response.json",
    "uazapi_webhook_config_request.json",
}


@pytest.fixture
def adapter() -> UazapiAdapter:
    return UazapiAdapter(BASE, TOKEN)


@pytest.fixture(scope="module")
def spec() -> dict:
    return contract("uazapi/uazapi-openapi.json")


def request_schema(spec: dict, path: str) -> Draft202012Validator:
    schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": spec["components"]})


def raw(name: str) -> bytes:
    return (CONTRACTS / "uazapi" / name).read_bytes()


def test_every_contract_file_is_covered():
    files = {p.name for p in (CONTRACTS / "uazapi").glob("*.json")}
    assert files == set(WEBHOOKS) | API_FILES


@pytest.mark.parametrize("name", sorted(WEBHOOKS))
def test_webhook_parsed(adapter, name):
    events = adapter.parse({}, raw(name))
    got = [(e.kind, e.contact, e.text, e.message_id, e.raw_type,
            [a.kind for a in e.attachments], e.expects_reply) for e in events]
    assert got == WEBHOOKS[name]
    for event in events:
        assert event.timestamp is not None and 1.7e9 < event.timestamp < 1.8e9  # ms -> s
        if event.kind in (MESSAGE, OWNER, ECHO):
            assert event.name == "Maria Souza"  # the customer, never the instance owner
    assert [(e.shown_as, e.reply_to) for e in events] == SHOWN.get(
        name, [(None, None)] * len(events))


def test_receipts_carry_the_state(adapter):
    assert {e.status for e in adapter.parse({}, raw("uazapi_messages_update.json"))} == {"read"}


def test_media_reference_is_the_bare_message_id(adapter):
    [doc] = adapter.parse({}, raw("uazapi_document.json"))[0].attachments
    assert doc == MediaRef(source="uazapi", ref="AC32D9B3800862E9428A9B580162D209",
                           kind="document", mime_type="application/pdf",
                           filename="pedido-1234.pdf", size=5606601)


def test_groups_only_when_asked():
    adapter = UazapiAdapter(BASE, TOKEN, include_groups=True)
    [event] = adapter.parse({}, raw("uazapi_group.json"))
    assert event.contact == "120363000000000001@g.us"
    assert event.text == "Maria Souza: Alguém sabe o horário de hoje?"
    assert event.name == "Grupo Clientes VIP"


@pytest.mark.parametrize("body", [
    b"nope", b"[1]", b"{}", b'{"EventType": "presence"}', b'{"EventType": "messages"}',
    b'{"EventType": "messages", "message": {"fromMe": false}}',
    b'{"event": "messages.upsert", "instance": "x", "data": {"key": {}}}',  # uazapi v1
    b'{"EventType": "messages_update", "event": {"MessageIDs": "x"}}',
    b'{"EventType": "messages", "message": {"chatid": "1@s.whatsapp.net", "content": 5}}',
])
def test_unknown_shapes_are_skipped_not_raised(adapter, body):
    assert all(e.kind == MESSAGE for e in adapter.parse({}, body))


def test_verify_compares_the_instance_token(adapter):
    assert adapter.verifies
    assert adapter.verify({}, raw("uazapi_text.json"))
    forged = contract("uazapi/uazapi_text.json")
    forged["token"] = "someone-else"
    assert not adapter.verify({}, json.dumps(forged).encode())
    assert not adapter.verify({}, b"not json")
    assert not adapter.verify({}, b"[]")


@responses.activate
def test_send_text_is_valid_for_the_spec_and_tracked(adapter, spec):
    responses.post(f"{BASE}/send/text", json=contract("uazapi/uazapi_send_text_response.json"),
                   match=[matchers.header_matcher({"token": TOKEN})])
    text = "Olá! Recebemos sua mensagem e já vamos te atender."
    assert adapter.send_text(CHAT, text) == "3EB0A1B2C3D4E5F6A7B8C9"
    body = json.loads(responses.calls[0].request.body)
    request_schema(spec, "/send/text").validate(body)
    example = contract("uazapi/uazapi_send_text_request.json")
    assert {k: body[k] for k in ("number", "text", "track_source")} == {
        k: example[k] for k in ("number", "text", "track_source")}
    assert body["track_id"]


@responses.activate
def test_send_media_is_valid_for_the_spec(adapter, spec):
    responses.post(f"{BASE}/send/media", json=contract("uazapi/uazapi_send_media_response.json"))
    assert adapter.send_media(CHAT, "https://files.example.com/boleto.pdf", "application/pdf",
                              caption="Segue seu boleto", filename="boleto.pdf") == (
        "3EB0D4C3B2A1F6E5D4C3B2")
    assert adapter.send_media("5511988887777", b"\x89PNG", "image/png") == "3EB0D4C3B2A1F6E5D4C3B2"
    first, second = (json.loads(c.request.body) for c in responses.calls)
    for body in (first, second):
        request_schema(spec, "/send/media").validate(body)
    example = contract("uazapi/uazapi_send_media_request.json")
    assert {k: first[k] for k in ("number", "type", "file", "docName", "text")} == {
        k: example[k] for k in ("number", "type", "file", "docName", "text")}
    assert second["type"] == "image" and base64.b64decode(second["file"]) == b"\x89PNG"


@responses.activate
def test_send_errors(adapter):
    responses.post(f"{BASE}/send/text", status=401, json=contract(
        "uazapi/uazapi_send_error_401.json"))
    with pytest.raises(ProviderRejected) as refused:
        adapter.send_text(CHAT, "x")
    assert "Invalid token" in str(refused.value) and TOKEN not in str(refused.value)


@responses.activate
def test_download_asks_for_a_link_then_fetches_it_without_the_token(adapter, spec):
    answer = contract("uazapi/uazapi_message_download_response.json")
    responses.post(f"{BASE}/message/download", json=answer,
                   match=[matchers.header_matcher({"token": TOKEN})])
    responses.get(answer["fileURL"], body=b"jpeg!", content_type="image/jpeg")
    [media] = adapter.parse({}, raw("uazapi_image.json"))[0].attachments
    attachment = adapter.download(media, 1_000_000)
    assert (attachment.data, attachment.content_type) == (b"jpeg!", "image/jpeg")
    asked = json.loads(responses.calls[0].request.body)
    request_schema(spec, "/message/download").validate(asked)
    assert asked == {"id": "AC3D4FE37D20ED8957FACCDAD9368A4A", "return_link": True}
    assert "token" not in responses.calls[1].request.headers


@responses.activate
def test_download_of_a_file_known_to_be_too_big_asks_nothing(adapter):
    [media] = adapter.parse({}, raw("uazapi_document.json"))[0].attachments  # 5.6 MB
    with pytest.raises(MediaTooLarge):
        adapter.download(media, 1_000_000)
    assert len(responses.calls) == 0


def _relayed(send_key: str, maybe_sent: bool) -> AgentMessage:
    return AgentMessage(contact=ContactIdentity(key="5511988887777", kind="phone",
                                                identifier="5511988887777"),
                        text="Seu pedido saiu para entrega", chatwoot_message_id=0,
                        conversation_id=0, kind="bot", send_key=send_key,
                        maybe_sent=maybe_sent)


def _find_answer(*tracks: str) -> dict:
    # the shape of POST /message/find's 200 in uazapi-openapi.json (Message: messageid,
    # track_source, track_id)
    return {"returnedMessages": len(tracks), "limit": 1, "offset": 0, "hasMore": False,
            "messages": [{"id": "r3EB0538", "messageid": "3EB0F00D" + t[-1],
                          "chatid": CHAT, "fromMe": True, "track_source": "chatwoot-mirror",
                          "track_id": t} for t in tracks]}


@responses.activate
def test_a_first_try_is_sent_with_its_send_key_as_track_id_and_looks_nothing_up(adapter):
    responses.post(f"{BASE}/send/text", json=contract("uazapi/uazapi_send_text_response.json"))
    assert adapter.relay(_relayed("row7", maybe_sent=False)) == "3EB0A1B2C3D4E5F6A7B8C9"
    assert [c.request.url for c in responses.calls] == [f"{BASE}/send/text"]
    assert json.loads(responses.calls[0].request.body)["track_id"] == "row7-0"


@responses.activate
def test_a_retried_send_that_reached_uazapi_is_found_by_its_track_id_and_not_sent_again(
        adapter, spec):
    responses.post(f"{BASE}/message/find", json=_find_answer("row7-0"))
    assert adapter.relay(_relayed("row7", maybe_sent=True)) == "3EB0F00D0"
    assert [c.request.url for c in responses.calls] == [f"{BASE}/message/find"]
    body = json.loads(responses.calls[0].request.body)
    request_schema(spec, "/message/find").validate(body)
    assert body == {"track_source": "chatwoot-mirror", "track_id": "row7-0", "limit": 1}
    assert responses.calls[0].request.headers["token"] == TOKEN


@responses.activate
def test_a_retried_send_uazapi_never_got_is_sent_with_the_same_track_id(adapter):
    responses.post(f"{BASE}/message/find", json=_find_answer())
    responses.post(f"{BASE}/send/text", json=contract("uazapi/uazapi_send_text_response.json"))
    assert adapter.relay(_relayed("row7", maybe_sent=True)) == "3EB0A1B2C3D4E5F6A7B8C9"
    assert [c.request.url for c in responses.calls] == [f"{BASE}/message/find",
                                                        f"{BASE}/send/text"]
    assert json.loads(responses.calls[1].request.body)["track_id"] == "row7-0"


@responses.activate
def test_a_retried_send_waits_when_uazapi_cannot_say_whether_it_has_it(adapter):
    responses.post(f"{BASE}/message/find", status=503, json={"error": "busy"})
    with pytest.raises(ProviderError) as unsure:
        adapter.relay(_relayed("row7", maybe_sent=True))
    assert unsure.value.retryable
    assert all(c.request.url != f"{BASE}/send/text" for c in responses.calls)
