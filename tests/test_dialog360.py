"""360dialog adapter: every contract payload parsed, sends and downloads as 360dialog sees them."""

from __future__ import annotations

import json

import pytest
import responses
from conftest import CONTRACTS, contract
from responses import matchers

from chatwoot_mirror.identity import identify
from chatwoot_mirror.integrations import ProviderError, ProviderRejected
from chatwoot_mirror.integrations.base import MESSAGE, OWNER, STATUS
from chatwoot_mirror.integrations.dialog360 import Dialog360Adapter
from chatwoot_mirror.media import MediaError, MediaNotReady, MediaRef, MediaTooLarge

CLOUD = "https://waba-v2.360dialog.io"
KEY = "d360-test-key"
MARIA = "5511988887777"

# file -> (kind, contact, text, raw_type, attachment kinds, expects_reply) of each event
WEBHOOKS = {
    "cloud_text.json": [(MESSAGE, MARIA, "Oi, vocês entregam no sábado?", "text", [], True)],
    "cloud_text_reply_context.json": [(MESSAGE, MARIA, "Sim, pode ser às 10h", "text", [],
                                       True)],
    "cloud_image.json": [(MESSAGE, MARIA, "Foto do produto com defeito", "image", ["image"],
                          True)],
    "cloud_audio_voice.json": [(MESSAGE, MARIA, "", "audio", ["audio"], True)],
    "cloud_document.json": [(MESSAGE, MARIA, "Segue o comprovante", "document", ["document"],
                             True)],
    "cloud_video.json": [(MESSAGE, MARIA, "Vídeo do problema", "video", ["video"], True)],
    "cloud_sticker.json": [(MESSAGE, MARIA, "", "sticker", ["sticker"], True)],
    "cloud_location.json": [(MESSAGE, MARIA, "Loja Paulista\nAv. Paulista, 1578 - Bela Vista, "
                             "São Paulo - SP\nhttps://maps.google.com/?q=-23.5613,-46.6565",
                             "location", [], True)],
    "cloud_interactive_button_reply.json": [(MESSAGE, MARIA, "Falar com atendente",
                                             "interactive", [], True)],
    "cloud_interactive_list_reply.json": [(MESSAGE, MARIA, "2ª via de boleto", "interactive",
                                           [], True)],
    "cloud_button_quick_reply.json": [(MESSAGE, MARIA, "Confirmar", "button", [], True)],
    "cloud_reaction.json": [(MESSAGE, MARIA, "👍", "reaction", [], False)],
    "cloud_text_bsuid.json": [(MESSAGE, MARIA, "Olá", "text", [], True)],
    "cloud_text_bsuid_no_phone.json": [(MESSAGE, "BR.1502576394655843", "Olá", "text", [],
                                        True)],
    "cloud_smb_message_echo.json": [(OWNER, MARIA, "Oi Maria, já vi seu pedido", "text", [],
                                     True)],
    # issue #17: written from Meta's messages webhook reference (fixtures README)
    "cloud_edit.json": [(MESSAGE, MARIA, "Quero 3 camisetas, não 2", "edit", [], False)],
    "cloud_revoke.json": [(MESSAGE, MARIA, "", "revoke", [], False)],
    "cloud_order.json": [(MESSAGE, MARIA, "2 × camiseta-azul-m — BRL 59.90\n1 × bone-preto — "
                          "BRL 39.50\nTotal: BRL 159.30\nEntrega no sábado?", "order", [],
                          True)],
    "cloud_contacts.json": [(MESSAGE, MARIA, "Carlos Lima +55 11 96666-5555", "contacts",
                             ["document"], True)],
    "cloud_unsupported.json": [(MESSAGE, MARIA, "", "unsupported", [], False)],
    "cloud_unsupported_poll.json": [(MESSAGE, MARIA, "", "poll_creation", [], False)],
    "cloud_product_inquiry.json": [(MESSAGE, MARIA, "camiseta-azul-m\nTem no tamanho G?",
                                    "text", [], True)],
    "cloud_smb_echo_image.json": [(OWNER, MARIA, "Seu pedido, embalado", "image", ["image"],
                                   True)],
    "cloud_status_sent.json": [(STATUS, MARIA, "", "status", [], True)],
    "cloud_status_sent_cbp_legacy.json": [(STATUS, MARIA, "", "status", [], True)],
    "cloud_status_delivered.json": [(STATUS, MARIA, "", "status", [], True)],
    "cloud_status_read.json": [(STATUS, MARIA, "", "status", [], True)],
    "cloud_status_failed.json": [(STATUS, MARIA, "", "status", [], True)],
    "onprem_text.json": [(MESSAGE, MARIA, "Oi, vocês entregam no sábado?", "text", [], True)],
    "onprem_image.json": [(MESSAGE, MARIA, "Foto do produto com defeito", "image", ["image"],
                           True)],
    "onprem_interactive_button_reply.json": [(MESSAGE, MARIA, "Falar com atendente",
                                              "interactive", [], True)],
    "onprem_button.json": [(MESSAGE, MARIA, "Confirmar", "button", [], True)],
    "onprem_status.json": [(STATUS, MARIA, "", "status", [], True)],
}
# API bodies, used by the send tests below; as webhooks they are nothing we act on
API_FILES = {
    "send_text_request.json", "send_text_response.json", "send_image_request.json",
    "send_document_request.json", "onprem_send_text_request.json",
    "onprem_send_text_response.json", "media_url_response.json", "webhook_config_request.json",
    "error_response_invalid_parameter.json",
}


@pytest.fixture
def adapter() -> Dialog360Adapter:
    return Dialog360Adapter(KEY, webhook_secret="hook-secret")


def raw(name: str) -> bytes:
    return (CONTRACTS / "dialog360" / name).read_bytes()


def test_every_contract_file_is_covered():
    files = {p.name for p in (CONTRACTS / "dialog360").glob("*.json")}
    assert files == set(WEBHOOKS) | API_FILES


@pytest.mark.parametrize("name", sorted(WEBHOOKS))
def test_webhook_parsed(adapter, name):
    events = adapter.parse({}, raw(name))
    got = [(e.kind, e.contact, e.text, e.raw_type, [a.kind for a in e.attachments],
            e.expects_reply) for e in events]
    assert got == WEBHOOKS[name]
    body = contract(f"dialog360/{name}")
    for event in events:
        assert event.timestamp in (1767225600.0, 1767225660.0, 1767225700.0)
        assert event.message_id and event.message_id in json.dumps(body)
        if event.kind == MESSAGE:
            assert event.name == "Maria Souza"


@pytest.mark.parametrize("name", sorted(API_FILES))
def test_api_bodies_are_no_events(adapter, name):
    assert adapter.parse({}, raw(name)) == []


def test_media_references_carry_what_the_download_needs(adapter):
    [image] = adapter.parse({}, raw("cloud_image.json"))[0].attachments
    assert image == MediaRef(source="dialog360", ref="1234567890123456", kind="image",
                             mime_type="image/jpeg")
    [doc] = adapter.parse({}, raw("cloud_document.json"))[0].attachments
    assert (doc.ref, doc.filename, doc.mime_type) == (
        "3234567890123456", "comprovante.pdf", "application/pdf")


def test_statuses_carry_state_and_error(adapter):
    [failed] = adapter.parse({}, raw("cloud_status_failed.json"))
    assert failed.status == "failed"
    assert failed.message_id == "wamid.HBgNNTUxMTk4ODg4Nzc3NxUCABIYFjNFQjAOUT00001AAAA="
    assert failed.error.startswith("131047 Message failed to send because more than 24 hours")
    assert [e.status for e in adapter.parse({}, raw("cloud_status_read.json"))] == ["read"]


def test_every_entry_change_and_message_is_read(adapter):
    body = contract("dialog360/cloud_text.json")
    second = json.loads(json.dumps(body["entry"][0]))
    message = second["changes"][0]["value"]["messages"][0]
    second["changes"][0]["value"]["messages"].append({**message, "id": "wamid.two"})
    body["entry"].append(second)
    events = adapter.parse({}, json.dumps(body).encode())
    assert [e.message_id for e in events] == [message["id"], message["id"], "wamid.two"]


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b"{}", b'{"entry": "x"}', b'{"entry": [{"changes": [{"value": 1}]}]}',
    b'{"entry": [{"changes": [{"field": "messages", "value": {"messages": [{"id": "x"}]}}]}]}',
    b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "account_update",'
    b' "value": {}}]}]}',
    b'{"messages": [{"from": "1", "type": "text", "text": "not an object"}]}',
])
def test_unknown_shapes_are_skipped_not_raised(adapter, body):
    events = adapter.parse({}, body)
    assert all(e.kind == MESSAGE for e in events)


def test_unsupported_message_types_are_shown_but_not_answered(adapter):
    body = contract("dialog360/cloud_text.json")
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    message["type"] = "unsupported"  # Meta's type for what Cloud API cannot carry
    [event] = adapter.parse({}, json.dumps(body).encode())
    assert (event.shown_as, event.raw_type, event.expects_reply) == (
        "unsupported", "unsupported", False)


def test_verify_with_header_or_url_token(adapter):
    assert adapter.verify({"X-Webhook-Secret": "hook-secret"}, b"{}")
    assert adapter.verify({}, b"{}", {"token": "hook-secret"})
    assert not adapter.verify({"X-Webhook-Secret": "wrong"}, b"{}")
    assert not adapter.verify({}, b"{}")
    open_adapter = Dialog360Adapter(KEY)
    assert not open_adapter.verifies and not open_adapter.verify({}, b"{}")
    assert Dialog360Adapter(KEY, insecure=True).verify({}, b"{}")


@responses.activate
def test_send_text_is_the_documented_request(adapter):
    responses.post(
        f"{CLOUD}/messages", json=contract("dialog360/send_text_response.json"),
        match=[matchers.json_params_matcher(contract("dialog360/send_text_request.json")),
               matchers.header_matcher({"D360-API-KEY": KEY})],
    )
    message_id = adapter.send_text(MARIA, "Olá! Recebemos sua mensagem.")
    assert message_id == "wamid.HBgNNTUxMTk4ODg4Nzc3NxUCABIYFjNFQjAOUT00001AAAA="


@responses.activate
def test_send_to_an_identity_uses_the_number_whatsapp_gave():
    adapter = Dialog360Adapter(KEY)
    responses.post(f"{CLOUD}/messages", json={"messages": [{"id": "wamid.x"}]})
    identity = identify("551188887777")  # an old 8-digit mobile: the key gains the 9
    assert identity.key == "wa-5511988887777"
    adapter.send_text(identity, "oi")
    assert json.loads(responses.calls[0].request.body)["to"] == "551188887777"


@responses.activate
def test_send_to_a_bsuid_uses_recipient():
    adapter = Dialog360Adapter(KEY)
    responses.post(f"{CLOUD}/messages", json={"messages": [{"id": "wamid.x"}]})
    adapter.send_text(identify("BR.1502576394655843"), "oi")
    body = json.loads(responses.calls[0].request.body)
    assert body["recipient"] == "BR.1502576394655843" and "to" not in body


@responses.activate
def test_send_media_by_link_is_the_documented_request(adapter):
    responses.post(f"{CLOUD}/messages", json={"messages": [{"id": "wamid.img"}]},
                   match=[matchers.json_params_matcher(
                       contract("dialog360/send_image_request.json"))])
    responses.post(f"{CLOUD}/messages", json={"messages": [{"id": "wamid.doc"}]},
                   match=[matchers.json_params_matcher(
                       contract("dialog360/send_document_request.json"))])
    assert adapter.send_media(MARIA, "https://files.example.com/catalogo.jpg", "image/jpeg",
                              caption="Nosso catálogo") == "wamid.img"
    assert adapter.send_media(MARIA, "https://files.example.com/boleto.pdf", "application/pdf",
                              caption="Seu boleto", filename="boleto.pdf") == "wamid.doc"


@responses.activate
def test_send_media_bytes_uploads_first(adapter):
    responses.post(f"{CLOUD}/media", json={"id": "998877"},
                   match=[matchers.header_matcher({"D360-API-KEY": KEY})])
    responses.post(f"{CLOUD}/messages", json={"messages": [{"id": "wamid.a"}]})
    assert adapter.send_media(MARIA, b"OggS...", "audio/ogg", caption="ignored") == "wamid.a"
    upload = responses.calls[0].request
    assert b'name="file"' in upload.body and b"OggS..." in upload.body
    sent = json.loads(responses.calls[1].request.body)
    assert sent["type"] == "audio" and sent["audio"] == {"id": "998877"}  # audio: no caption


@responses.activate
def test_on_premise_send():
    adapter = Dialog360Adapter(KEY, "https://waba.360dialog.io")
    assert adapter.on_premise
    responses.post(
        "https://waba.360dialog.io/v1/messages",
        json=contract("dialog360/onprem_send_text_response.json"),
        match=[matchers.json_params_matcher(contract("dialog360/onprem_send_text_request.json")),
               matchers.header_matcher({"D360-API-KEY": KEY})],
    )
    assert adapter.send_text(MARIA, "Olá! Recebemos sua mensagem.") == (
        "gBGGFRBzFymPAgkgQkwi7IORac3")


@responses.activate
def test_errors_map_to_the_hierarchy(adapter):
    responses.post(f"{CLOUD}/messages", status=400,
                   json=contract("dialog360/error_response_invalid_parameter.json"))
    with pytest.raises(ProviderRejected) as refused:
        adapter.send_text(MARIA, "x")
    assert refused.value.status == 400 and not refused.value.retryable
    assert 'Unexpected key "txt"' in str(refused.value)
    assert KEY not in str(refused.value)
    responses.post(f"{CLOUD}/messages", status=503, body="busy")
    with pytest.raises(ProviderError) as busy:
        adapter.send_text(MARIA, "x")
    assert busy.value.retryable and not isinstance(busy.value, ProviderRejected)


@responses.activate
def test_download_swaps_metas_host_for_360dialogs(adapter):
    info = contract("dialog360/media_url_response.json")
    responses.get(f"{CLOUD}/1234567890123456", json=info,
                  match=[matchers.header_matcher({"D360-API-KEY": KEY})])
    responses.get(
        f"{CLOUD}/whatsapp_business/attachments/",
        body=b"\xff\xd8jpeg-bytes", content_type="image/jpeg",
        match=[matchers.query_string_matcher(info["url"].split("?", 1)[1]),
               matchers.header_matcher({"D360-API-KEY": KEY})],
    )
    [media] = adapter.parse({}, raw("cloud_image.json"))[0].attachments
    attachment = adapter.download(media, 1_000_000)
    assert attachment.data == b"\xff\xd8jpeg-bytes"
    assert attachment.content_type == "image/jpeg"
    assert attachment.filename.startswith("image-") and attachment.filename.endswith(".jpg")
    assert all("lookaside.fbsbx.com" not in c.request.url for c in responses.calls)


@responses.activate
def test_download_limits(adapter):
    info = contract("dialog360/media_url_response.json")  # file_size 162894
    responses.get(f"{CLOUD}/1234567890123456", json=info)
    responses.get(f"{CLOUD}/whatsapp_business/attachments/", body=b"x" * 200_000)
    ref = MediaRef("dialog360", "1234567890123456", "image")
    with pytest.raises(MediaTooLarge):
        adapter.download(ref, 100_000)
    responses.get(f"{CLOUD}/404404", status=404, json={"error": {"message": "gone"}})
    with pytest.raises(MediaError) as gone:
        adapter.download(MediaRef("dialog360", "404404", "image"), 100_000)
    assert not gone.value.retryable  # 360dialog blocks callers that repeat 4xx downloads
    # the file itself gone (Meta's copy expired): not "late media" either, never asked again
    responses.get(f"{CLOUD}/555", json={**info, "url": info["url"].replace(
        "attachments/", "attachments/gone")})
    responses.get(f"{CLOUD}/whatsapp_business/attachments/gone", status=404)
    with pytest.raises(MediaError) as expired:
        adapter.download(MediaRef("dialog360", "555", "image"), 100_000)
    assert not expired.value.retryable and not isinstance(expired.value, MediaNotReady)


def graph_error(code: int, message: str, details: str) -> dict:
    """A Graph API error body as Cloud API (and 360dialog, passing it on) answers a send it
    refuses, shaped as error_response_invalid_parameter.json; codes and titles from Meta's
    "WhatsApp error codes" page (developers.facebook.com/documentation/business-messaging/
    whatsapp/support/error-codes)."""
    return {"error": {"message": f"(#{code}) {message}", "type": "OAuthException",
                      "code": code, "error_data": {"messaging_product": "whatsapp",
                                                   "details": details},
                      "fbtrace_id": "AbCdEfGhIjKlMnOpQrStUv1"}}


@pytest.mark.parametrize("status,body,retryable", [
    (400, graph_error(130429, "Rate limit hit", "Cloud API message throughput has been "
                      "reached."), True),
    (400, graph_error(131056, "(Business Account, Consumer Account) pair rate limit hit",
                      "Message failed to send because there were too many messages sent "
                      "from this phone number to the same phone number in a short period "
                      "of time."), True),
    (400, graph_error(131048, "Spam rate limit hit", "Message failed to send because there "
                      "are restrictions on how many messages can be sent from this phone "
                      "number."), True),
    (400, graph_error(80007, "Rate limit issues", "The WhatsApp Business Account has "
                      "reached its rate limit."), True),
    (400, graph_error(131016, "Service unavailable", "A service is temporarily "
                      "unavailable."), True),
    # 360dialog's own refusal (docs.360dialog.com, "Error Code Reference")
    (400, {"meta": {"success": False, "http_code": 400,
                    "developer_message": "You have exceeded the endpoint rate limit."}}, True),
    (400, graph_error(131026, "Message Undeliverable", "Unable to deliver message."), False),
    (400, graph_error(131047, "Re-engagement message", "More than 24 hours have passed "
                      "since the recipient last replied to the sender number."), False),
    (400, graph_error(100, "Invalid parameter", 'Unexpected key "txt".'), False),
    (401, {"meta": {"developer_message": "Invalid api_key"}}, False),
])
@responses.activate
def test_rate_limits_and_temporary_errors_are_retryable_and_refusals_are_not(
        adapter, status, body, retryable):
    """Issue #17: a 360dialog rate-limit refusal is a 400 with a throttling code; it was
    taken as permanent and the reply dropped. Invalid recipients and policy refusals stay
    permanent (they are shown in Chatwoot as failed)."""
    responses.post(f"{CLOUD}/messages", status=status, json=body)
    with pytest.raises(ProviderError) as failed:
        adapter.send_text(MARIA, "x")
    assert failed.value.retryable is retryable
    assert isinstance(failed.value, ProviderRejected) is not retryable


@pytest.mark.parametrize("language,kind,label", [
    ("pt-BR", "poll_creation", "[mensagem do tipo enquete, que o WhatsApp não mostra aqui]"),
    ("es", "view_once", "[mensaje de tipo visualización única, que WhatsApp no muestra aquí]"),
    ("en", "event", "[a message of kind event, which WhatsApp does not show here]"),
    ("en", "some_new_kind", "[a message of kind some_new_kind, which WhatsApp does not show here]"),
])
def test_an_unsupported_message_shows_the_kind_meta_names_in_each_language(
        adapter, language, kind, label):
    """Meta's payload names what it did not deliver (``unsupported.type``): agents read
    that kind in their language, or Meta's own name for one we do not know."""
    from chatwoot_mirror.kinds import render
    from chatwoot_mirror.texts import DEFAULTS

    body = contract("dialog360/cloud_unsupported_poll.json")
    body["entry"][0]["changes"][0]["value"]["messages"][0]["unsupported"]["type"] = kind
    [event] = adapter.parse({}, json.dumps(body).encode())
    assert (event.shown_as, event.raw_type, event.expects_reply) == ("unsupported", kind, False)
    assert render(DEFAULTS[language], event.shown_as, event.text, event.raw_type) == label
