"""Issue #17: every kind of WhatsApp message, and what became of it, as agents see it in
Chatwoot. End to end on the emulator: a provider webhook (payloads written from each
provider's documentation, see tests/fixtures/contracts/*/README.md) -> the Chatwoot
messages, replies and statuses it makes; an agent's quote -> the provider request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from conftest import contract, eventually
from freezegun import freeze_time
from test_adapters_e2e import MARIA, Host, dialog360, faq_bot, uazapi, zpro

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.integrations import handle_inbound
from chatwoot_mirror.integrations.base import BotReply
from chatwoot_mirror.message_ids import Located, MessageIds
from chatwoot_mirror.relay import AgentAttachment
from chatwoot_mirror.store import open_store
from chatwoot_mirror.testing import FakeChatwoot

#: the customer's message every 360dialog case below concerns (cloud_edit.json etc.)
ORIGINAL = "wamid.HBgNNTUxMTk4ODg4Nzc3NxUCABIYFjNFQjAORIG0001AAAA="
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 50
#: an MP3 frame's first bytes, behind an ID3 tag
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + b"\x00" * 40


def make_config(cw: FakeChatwoot, tmp_path, **overrides: Any) -> Config:
    values: dict[str, Any] = dict(
        url=cw.url, inbox_identifier=cw.inbox_identifier, account_id=cw.account_id,
        bot_token=cw.bot_token, api_token=cw.user_token, webhook_secret="inbox-secret",
        db_path=str(tmp_path / "m.db"), max_requests_per_minute=0,
        retry_base_seconds=0.02, retry_max_seconds=0.1)
    values.update(overrides)
    return Config(**values)


@pytest.fixture
def chatwoot(tmp_path):
    with FakeChatwoot(webhook_secret="inbox-secret") as cw:
        mirror = Mirror(make_config(cw, tmp_path, handoff_keywords=("atendente",)))
        yield cw, mirror
        mirror.close(timeout=1)


def parsed(adapter, body: dict[str, Any]):
    [event] = adapter.parse({}, json.dumps(body).encode())
    return event


def original_text() -> dict[str, Any]:
    body = contract("dialog360/cloud_text.json")
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    message.update(id=ORIGINAL, text={"body": "Quero 2 camisetas, quero falar com atendente?"})
    return body


def reaction_to_original() -> dict[str, Any]:
    body = contract("dialog360/cloud_reaction.json")
    body["entry"][0]["changes"][0]["value"]["messages"][0]["reaction"]["message_id"] = ORIGINAL
    return body


CASES = {
    # fixture: (what the agent reads, quotes the original, the bot answers it)
    "cloud_edit.json": ("editou: Quero 3 camisetas, não 2", True, False),
    "cloud_revoke.json": ("apagou esta mensagem", True, False),
    "reaction": ("reagiu com 👍", True, False),
    "cloud_order.json": ("Pedido:\n2 × camiseta-azul-m — BRL 59.90\n"
                         "1 × bone-preto — BRL 39.50\nTotal: BRL 159.30\nEntrega no sábado?",
                         False, True),
    "cloud_location.json": (None, False, True),
    "cloud_product_inquiry.json": ("Produto do catálogo: camiseta-azul-m\nTem no tamanho G?",
                                   False, True),
    "cloud_contacts.json": ("Contato: Carlos Lima +55 11 96666-5555", False, True),
    "cloud_unsupported.json": ("[mensagem do tipo desconhecido, que o WhatsApp não mostra aqui]",
                               False, False),
    # issue #30: Meta names the kind (unsupported.type), the label shows it
    "cloud_unsupported_poll.json": ("[mensagem do tipo enquete, que o WhatsApp não mostra aqui]",
                                    False, False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_360dialog_kinds_show_as_agents_read_them(chatwoot, case):
    cw, mirror = chatwoot
    adapter, fake, _ = dialog360()
    calls = []
    first = handle_inbound(mirror, adapter, parsed(adapter, original_text()), calls.append)
    assert first == "paused"  # "atendente" hands over; resume so the bot has the contact
    mirror.resume(MARIA)
    assert mirror.flush()
    body = reaction_to_original() if case == "reaction" else contract(f"dialog360/{case}")
    if case == "cloud_edit.json":  # the edit repeats the keyword: no second handoff
        body["entry"][0]["changes"][0]["value"]["messages"][0]["edit"]["message"]["text"][
            "body"] = "Quero 3 camisetas, não 2"
    outcome = handle_inbound(mirror, adapter, parsed(adapter, body), calls.append)
    assert mirror.flush()
    expected, quotes, answered = CASES[case]
    # a bot that answers nothing: "no_reply" either way; quiet kinds never reach it
    assert outcome == "no_reply" and (len(calls) == 1) == answered
    assert not mirror.is_paused(MARIA)
    [conv] = cw.conversations()
    messages = [m for m in cw.messages(conv["id"]) if not m["private"]]
    original, shown = messages[0], messages[-1]
    assert original["content"] == "Quero 2 camisetas, quero falar com atendente?"
    assert shown["message_type"] == 0 and shown["sender"]["type"] == "contact"
    if expected is None:  # location: its name, address and a maps link
        assert shown["content"].startswith("Localização: ")
        assert "https://maps.google.com/?q=" in shown["content"]
    else:
        assert shown["content"] == expected
    if quotes:  # Chatwoot's own id of the customer's message, from our map
        assert shown["content_attributes"]["in_reply_to"] == original["id"]
        assert shown["content_attributes"]["in_reply_to_external_id"] == original["source_id"]
    else:
        assert not shown["content_attributes"].get("in_reply_to")
    if case == "cloud_contacts.json":
        [card] = shown["attachments"]
        assert cw.blob(card["data_url"])["filename"] == "contact.vcf"
        assert cw.blob(card["data_url"])["content_type"] == "text/vcard"
    # a delete never loses what the customer wrote
    assert original["content"] == cw.messages(conv["id"])[0]["content"]


def test_a_reaction_or_edit_fires_no_trigger_and_is_no_bot_turn(tmp_path):
    with FakeChatwoot() as cw:
        mirror = Mirror(make_config(cw, tmp_path, handoff_keywords=("atendente",),
                                    max_bot_turns=2))
        try:
            adapter, fake, _ = dialog360()
            original = original_text()
            original["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "Oi"
            assert handle_inbound(mirror, adapter, parsed(adapter, original),
                                  faq_bot) == "answered"
            edit = contract("dialog360/cloud_edit.json")
            edit["entry"][0]["changes"][0]["value"]["messages"][0]["edit"]["message"]["text"][
                "body"] = "Oi, quero um atendente"
            for body in (edit, reaction_to_original()):
                assert handle_inbound(mirror, adapter, parsed(adapter, body),
                                      faq_bot) == "no_reply"
            assert mirror.flush() and not mirror.is_paused(MARIA)
            assert len(fake.sent("POST", "/messages")) == 1  # the bot answered "Oi" only
        finally:
            mirror.close(timeout=1)


def test_a_customer_reply_to_the_bot_quotes_the_bot_message(chatwoot):
    cw, mirror = chatwoot
    adapter, fake, case = dialog360()
    assert handle_inbound(mirror, adapter, parsed(adapter, case["text"]), faq_bot) == "answered"
    assert mirror.flush() and mirror.flush()
    [bot_provider_id] = case["ids"]
    reply = contract("dialog360/cloud_text_reply_context.json")
    reply["entry"][0]["changes"][0]["value"]["messages"][0]["context"]["id"] = bot_provider_id
    handle_inbound(mirror, adapter, parsed(adapter, reply), lambda e: None)
    assert mirror.flush()
    [conv] = cw.conversations()
    bot, quoted = cw.messages(conv["id"])[1:3]
    assert bot["content"] == "Entregamos sim, Maria Souza!"
    assert quoted["content"] == "Sim, pode ser às 10h"
    assert quoted["content_attributes"]["in_reply_to"] == bot["id"]


def test_a_quote_from_another_customer_conversation_is_not_followed(chatwoot, monkeypatch):
    """A provider id names a message of Maria's; João's message quoting it shows without
    the link, and never in Maria's conversation. (Chatwoot would drop a foreign id too:
    what we ask it is checked, not only what it keeps.)"""
    cw, mirror = chatwoot
    asked = []
    resolve = cw.emulator._in_reply_to
    monkeypatch.setattr(cw.emulator, "_in_reply_to", lambda conv, attrs: (
        asked.append(attrs.get("in_reply_to")), resolve(conv, attrs))[1])
    adapter, fake, _ = dialog360()
    maria = original_text()
    maria["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "Quero 2"
    handle_inbound(mirror, adapter, parsed(adapter, maria), lambda e: None)
    assert mirror.flush()  # Maria's message is in Chatwoot, its id in the map
    joao = contract("dialog360/cloud_text_reply_context.json")
    value = joao["entry"][0]["changes"][0]["value"]
    value["contacts"][0].update(wa_id="5521977776666", profile={"name": "João"})
    value["messages"][0].update({"from": "5521977776666", "context": {"id": ORIGINAL}})
    handle_inbound(mirror, adapter, parsed(adapter, joao), lambda e: None)
    assert mirror.flush()
    conversations = {c["meta"]["sender"]["name"]: c["id"] for c in cw.conversations()}
    [his] = cw.messages(conversations["João"])
    assert his["content"] == "Sim, pode ser às 10h"
    assert his["content_attributes"].get("in_reply_to") is None
    assert asked == [None, None]  # neither message asked Chatwoot for a quote
    assert len(cw.messages(conversations["Maria Souza"])) == 1


@pytest.mark.parametrize("provider", ["dialog360", "uazapi", "zpro"])
def test_an_agent_quote_goes_out_as_a_provider_reply(chatwoot, provider):
    cw, mirror = chatwoot
    adapter, fake, case = {"dialog360": dialog360, "uazapi": uazapi, "zpro": zpro}[provider]()
    host = Host(mirror, adapter, lambda e: None)
    cw.webhook_url = host.chatwoot_url
    try:
        event = parsed(adapter, case["text"])
        handle_inbound(mirror, adapter, event, lambda e: None)
        assert mirror.flush()
        [conv] = cw.conversations()
        [customer] = cw.messages(conv["id"])
        cw.agent_reply(conv["id"], "Sim, no sábado até 12h", in_reply_to=customer["id"])
        assert eventually(lambda: fake.sent("POST", case["send_path"]))
        [sent] = fake.sent("POST", case["send_path"])
        assert case["text_of"](sent) == "Sim, no sábado até 12h"
        if provider == "dialog360":  # Cloud API's reply: context.message_id
            assert sent["context"] == {"message_id": event.message_id}
        elif provider == "uazapi":   # uazapi /send/text: replyid
            assert sent["replyid"] == event.message_id
        else:  # Z-PRO's send API has no quote: a plain message, never a failure
            assert set(sent) == {"body", "number", "externalKey", "isClosed"}
    finally:
        host.close()


def test_uazapi_poll_vote_shows_the_chosen_option(chatwoot):
    cw, mirror = chatwoot
    adapter, fake, _ = uazapi()
    event = parsed(adapter, contract("uazapi/uazapi_poll_vote.json"))
    assert handle_inbound(mirror, adapter, event, lambda e: None) == "no_reply"
    assert mirror.flush()
    [conv] = cw.conversations()
    [message] = cw.messages(conv["id"])
    assert message["content"] == "Voto na enquete: Sábado de manhã"
    assert message["message_type"] == 0


@pytest.mark.parametrize("pause", [False, True])
def test_another_integration_on_the_number_shows_as_outgoing(chatwoot, pause):
    """uazapi ``wasSentByApi`` with a ``track_source`` that is not ours: a campaign
    sender. Outgoing, never the customer, never relayed; no pause unless configured."""
    cw, mirror = chatwoot
    adapter, fake, _ = uazapi()
    event = parsed(adapter, contract("uazapi/uazapi_fromme_other_integration.json"))
    assert handle_inbound(mirror, adapter, event, faq_bot,
                          pause_on_integration=pause) == "integration"
    assert mirror.flush() and mirror.flush()
    assert mirror.is_paused(MARIA) == pause
    [conv] = cw.conversations()
    assert conv["meta"]["sender"]["phone_number"] == "+" + MARIA
    [message] = cw.messages(conv["id"])
    assert message["content"] == ("[enviado por outra integração] "
                                  "Black Friday: 20% em tudo até domingo!")
    assert message["message_type"] == 1
    assert fake.requests == []  # nothing went back to the provider
    # and our own echo (track_source ours) is still only an echo
    ours = parsed(adapter, contract("uazapi/uazapi_fromme_api.json"))
    assert handle_inbound(mirror, adapter, ours, faq_bot) == "echo"


def test_a_photo_from_the_business_app_keeps_its_photo(chatwoot):
    cw, mirror = chatwoot
    adapter, fake, _ = dialog360()
    fake.routes[("GET", "/whatsapp_business/attachments/")] = (200, JPEG, "image/jpeg")
    event = parsed(adapter, contract("dialog360/cloud_smb_echo_image.json"))
    assert handle_inbound(mirror, adapter, event, faq_bot) == "owner"
    assert mirror.flush()
    [conv] = cw.conversations()
    [message] = cw.messages(conv["id"])
    assert message["message_type"] == 1
    assert message["content"] == "[enviado pelo celular] Seu pedido, embalado"
    [photo] = message["attachments"]
    assert photo["file_type"] == "image"
    assert cw.blob(photo["data_url"])["content_type"] == "image/jpeg"


def test_a_voice_note_labelled_ogg_with_mp3_bytes_plays_as_mp3(chatwoot):
    cw, mirror = chatwoot
    adapter, fake, _ = uazapi()
    fake.routes[("POST", "/message/download")] = (200, {
        "fileURL": "https://example.uazapi.com/files/voice.ogg", "mimetype": "audio/ogg"},
        "application/json")
    fake.routes[("GET", "/files/voice.ogg")] = (200, MP3, "audio/ogg")
    event = parsed(adapter, contract("uazapi/uazapi_audio_ptt.json"))
    handle_inbound(mirror, adapter, event, lambda e: None)
    assert mirror.flush()
    [conv] = cw.conversations()
    [voice] = cw.messages(conv["id"])[0]["attachments"]
    blob = cw.blob(voice["data_url"])
    assert blob["content_type"] == "audio/mpeg" and blob["filename"].endswith(".mp3")
    assert voice["file_type"] == "audio"


class Files:
    """A file server on loopback (a private address: allowed only when configured)."""

    def __init__(self, answers: list[tuple[int, bytes, str]]) -> None:
        self.answers, self.hits = answers, 0
        files = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                status, body, kind = files.answers[min(files.hits, len(files.answers) - 1)]
                files.hits += 1
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/catalogo.jpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("allowed", [True, False])
def test_a_bot_file_by_url_is_uploaded_or_linked(tmp_path, allowed):
    files = Files([(200, JPEG, "application/octet-stream")])
    with FakeChatwoot() as cw:
        hosts = ("127.0.0.1",) if allowed else ()
        mirror = Mirror(make_config(cw, tmp_path, media_allowed_hosts=hosts))
        try:
            adapter, fake, case = uazapi()
            reply = BotReply(messages=["Veja o catálogo",
                                       AgentAttachment(files.url, "image")])
            handle_inbound(mirror, adapter, parsed(adapter, case["text"]), lambda e: reply)
            assert mirror.flush() and mirror.flush()
            [conv] = cw.conversations()
            shown = cw.messages(conv["id"])[-1]
            assert [b["file"] for b in fake.sent("POST", "/send/media")] == [files.url]
            if allowed:  # fetched and uploaded: the agent sees the picture, not a link
                [picture] = shown["attachments"]
                assert cw.blob(picture["data_url"])["content_type"] == "image/jpeg"
                assert not shown["content"]
                assert files.hits == 1
            else:  # a private target is refused: the link stands in, nothing fetched
                assert shown["content"] == f"[image] {files.url}"
                assert not shown.get("attachments") and files.hits == 0
        finally:
            mirror.close(timeout=1)
            files.close()


def test_late_media_is_asked_again_until_it_is_there(tmp_path):
    """waha#1445: the file 404s while its upload finishes. Asked again (the first retry
    after 2 s), then uploaded; the customer's next message waits behind it, in order."""
    files = Files([(404, b"not yet", "text/plain"), (200, JPEG, "image/jpeg")])
    with FakeChatwoot() as cw:
        mirror = Mirror(make_config(cw, tmp_path, media_allowed_hosts=("127.0.0.1",)))
        try:
            adapter, fake, case = uazapi()
            fake.routes[("POST", "/message/download")] = (
                200, {"fileURL": files.url, "mimetype": "image/jpeg"}, "application/json")
            handle_inbound(mirror, adapter, parsed(adapter, case["image"]), lambda e: None)
            after = parsed(adapter, case["text"])
            handle_inbound(mirror, adapter, after, lambda e: None)
            assert mirror.flush(timeout=20)
            [conv] = cw.conversations()
            photo, text = cw.messages(conv["id"])
            assert photo["content"] == "Foto do produto com defeito"
            assert [a["file_type"] for a in photo["attachments"]] == ["image"]
            assert text["content"] == "Oi, vocês entregam no sábado?"
            assert files.hits == 2
        finally:
            mirror.close(timeout=1)
            files.close()


def test_media_still_missing_after_the_wait_becomes_a_note(tmp_path):
    files = Files([(404, b"gone", "text/plain")])
    with FakeChatwoot() as cw:
        mirror = Mirror(make_config(cw, tmp_path, media_allowed_hosts=("127.0.0.1",),
                                    media_wait_seconds=0))
        try:
            adapter, fake, case = uazapi()
            fake.routes[("POST", "/message/download")] = (
                200, {"fileURL": files.url, "mimetype": "image/jpeg"}, "application/json")
            handle_inbound(mirror, adapter, parsed(adapter, case["image"]), lambda e: None)
            assert mirror.flush()
            [conv] = cw.conversations()
            [message] = cw.messages(conv["id"])
            assert message["content"] == ("Foto do produto com defeito\n"
                                          "[image não copiado: o provedor não entregou o "
                                          "arquivo]")
        finally:
            mirror.close(timeout=1)
            files.close()


@pytest.mark.parametrize("provider", ["dialog360", "zpro"])
def test_without_a_user_token_a_failure_is_a_private_note(tmp_path, provider):
    """Agent Bot tokens may not PATCH a message's status: ticks are skipped, and a failure
    becomes a private note, explained, quoting the message that did not go out."""
    with FakeChatwoot() as cw:
        mirror = Mirror(make_config(cw, tmp_path, api_token=None))
        try:
            adapter, fake, case = {"dialog360": dialog360, "zpro": zpro}[provider]()
            handle_inbound(mirror, adapter, parsed(adapter, case["text"]), faq_bot)
            assert mirror.flush() and mirror.flush()
            [bot_id] = case["ids"][:]  # the one message sent: the bot's reply
            for status in ("sent", "delivered"):
                handle_inbound(mirror, adapter, parsed(adapter, case["receipt"](bot_id, status)),
                               faq_bot)
            if provider == "dialog360":
                failed = contract("dialog360/cloud_status_failed.json")
                failed["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = bot_id
            else:
                failed = {**contract("zpro/izing_hook_message_status_invalid_number.json"),
                          "externalKey": bot_id}
            assert handle_inbound(mirror, adapter, parsed(adapter, failed), faq_bot) == "status"
            assert mirror.flush()
            [conv] = cw.conversations()
            bot, note = cw.messages(conv["id"])[1:]
            assert bot["status"] == "sent"  # nothing could change it
            assert note["private"] and note["content_attributes"]["in_reply_to"] == bot["id"]
            reason = {"dialog360": "mais de 24 h desde a última mensagem do cliente",
                      "zpro": "número inválido no WhatsApp"}[provider]
            assert note["content"].startswith(
                "Mensagem não entregue ao cliente: " + reason), note["content"]
            assert not [r for r in cw.requests if r[0] == "PATCH"]
        finally:
            mirror.close(timeout=1)


def test_a_provider_id_map_links_in_either_order_and_expires():
    store = open_store("memory://")
    ids = MessageIds(store, ttl=60)
    where = Located("wa:5511988887777", 7, 70)
    # posted to Chatwoot first, then the provider answers
    ids.posted("k1", where)
    assert ids.find("wamid.1") is None
    ids.sent("wamid.1", key="k1")
    assert ids.find("wamid.1") == where and ids.provider_id(70) == "wamid.1"
    # sent first, then posted
    other = Located("wa:5511988887777", 7, 71)
    ids.sent("wamid.2", key="k2")
    # not in Chatwoot yet (an outage), but ours: its receipts are never another tool's
    assert ids.find("wamid.2") is None and ids.known("wamid.2")
    assert not ids.known("wamid.elsewhere")
    ids.posted("k2", other)
    assert ids.find("wamid.2") == other and ids.provider_id(71) == "wamid.2"
    # statuses only move forward; failed ends it
    assert ids.moves_forward(70, "read")
    ids.advance(70, "read")
    assert not ids.moves_forward(70, "delivered") and not ids.moves_forward(70, "sent")
    assert ids.moves_forward(70, "failed") and not ids.moves_forward(70, "bogus")
    with freeze_time(after_seconds(61)):
        assert ids.find("wamid.1") is None and ids.provider_id(70) is None
    store.close()


def after_seconds(seconds: float):
    import datetime

    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("user_token", [True, False])
def test_a_send_refused_for_good_is_shown_on_the_bot_reply(tmp_path, user_token):
    """Issue #17 item 4: an invalid recipient is permanent (not retried) and shown in
    Chatwoot. Meta's error object for 131026 ("Message undeliverable"), as the Graph API
    answers a send it refuses (Meta's "WhatsApp error codes")."""
    with FakeChatwoot() as cw:
        mirror = Mirror(make_config(cw, tmp_path,
                                    api_token=cw.user_token if user_token else None))
        try:
            adapter, fake, case = dialog360()
            fake.routes[("POST", "/messages")] = (400, {"error": {
                "message": "(#131026) Message undeliverable", "type": "OAuthException",
                "code": 131026, "error_data": {"messaging_product": "whatsapp",
                                               "details": "Message undeliverable"}}},
                "application/json")
            handle_inbound(mirror, adapter, parsed(adapter, case["text"]), faq_bot)
            assert mirror.flush() and mirror.flush() and mirror.flush()
            assert len([r for r in fake.requests if r.url.endswith("/messages")]) == 1
            [conv] = cw.conversations()
            messages = cw.messages(conv["id"])
            bot = next(m for m in messages if m["content"] == "Entregamos sim, Maria Souza!")
            explained = ("o número não recebe mensagens (sem WhatsApp, versão antiga ou "
                         "bloqueou a empresa) (131026)")
            if user_token:
                assert bot["status"] == "failed"
                assert bot["content_attributes"]["external_error"] == explained
            else:
                [note] = [m for m in messages if m["private"]]
                assert note["content"] == "Mensagem não entregue ao cliente: " + explained
                assert note["content_attributes"]["in_reply_to"] == bot["id"]
        finally:
            mirror.close(timeout=1)


ZPRO_CASES = {
    # fixture: (what the agent reads, a vCard file, the bot is asked)
    "whaticket_message_vcard.json": ("Contato: Carlos Lima +55 11 96666-5555", True, True),
    "whaticket_message_location.json": (
        "Localização: https://maps.google.com/?q=-23.5613991,-46.6565712", False, True),
    "whaticket_message_without_text.json": (
        "[mensagem sem texto (arquivo, figurinha ou outro tipo): o provedor não repassa o "
        "conteúdo; veja no WhatsApp]", False, False),
}


@pytest.mark.parametrize("case", sorted(ZPRO_CASES))
def test_zpro_kinds_show_as_agents_read_them(chatwoot, case):
    """Z-PRO's webhook carries only ``mensagem`` as Whaticket's getBodyMessage words it
    (tests/fixtures/contracts/zpro/README.md): a raw vCard, a base64 thumbnail before a
    Maps link, or no key at all for a photo without a caption."""
    cw, mirror = chatwoot
    adapter, fake, _ = zpro()
    asked = []
    handle_inbound(mirror, adapter, parsed(adapter, contract(f"zpro/{case}")), asked.append)
    assert mirror.flush()
    expected, card, answered = ZPRO_CASES[case]
    [conv] = cw.conversations()
    [shown] = cw.messages(conv["id"])
    assert shown["content"] == expected and shown["message_type"] == 0
    assert "base64" not in shown["content"]
    assert bool(asked) == answered
    if card:
        [vcf] = shown["attachments"]
        blob = cw.blob(vcf["data_url"])
        assert blob["filename"] == "contact.vcf" and blob["content_type"] == "text/vcard"
    else:
        assert not shown.get("attachments")


def test_a_message_with_nothing_to_show_is_labelled_not_dropped(chatwoot):
    """A text message whose body is empty (Cloud API sends what the phone sent) still tells
    the agent something arrived: never an empty message, never a silent drop."""
    cw, mirror = chatwoot
    adapter, fake, case = dialog360()
    body = case["text"]
    body["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "  "
    handle_inbound(mirror, adapter, parsed(adapter, body), lambda e: None)
    assert mirror.flush()
    [conv] = cw.conversations()
    [shown] = cw.messages(conv["id"])
    assert shown["content"] == "[mensagem do tipo text, que o WhatsApp não mostra aqui]"


def fetching_provider(fake, path: str, answer: tuple[int, Any, str]) -> list[int]:
    """Make ``path`` of a fake provider fetch the ``file`` it is given, as uazapi does
    before it answers: the statuses it got are returned (a 404 is a file it never sends)."""
    fetched: list[int] = []

    def route(request: Any) -> tuple[int, Any, str]:
        fetched.append(requests.get(json.loads(request.body)["file"], timeout=5).status_code)
        return answer
    fake.routes[("POST", path)] = route
    return fetched


@contextmanager
def marias_conversation(cw: FakeChatwoot, mirror: Mirror) -> Iterator[tuple[Any, dict]]:
    """uazapi as a host wires it, Chatwoot's webhooks pointed at it, and the conversation
    Maria's first message opened: (the fake provider, the conversation)."""
    adapter, fake, case = uazapi()
    host = Host(mirror, adapter, lambda e: None)
    cw.webhook_url = host.chatwoot_url
    try:
        handle_inbound(mirror, adapter, parsed(adapter, case["text"]), lambda e: None)
        assert mirror.flush()
        [conv] = cw.conversations()
        yield fake, conv
    finally:
        host.close()


@pytest.mark.parametrize("text", ["Segue o boleto", ""])
def test_an_agent_file_still_uploading_is_sent_once_it_is_there(chatwoot, text):
    """waha#1445: with S3 direct uploads Chatwoot's webhook comes before the file is
    stored, and a provider fetching it then gets a 404. The relay waits for the file (the
    emulator serves it 404 for 2.5 s), so the provider's only fetch finds it."""
    cw, mirror = chatwoot
    with marias_conversation(cw, mirror) as (fake, conv):
        fetched = fetching_provider(fake, "/send/media", fake.routes[("POST", "/send/media")])
        upload = cw.upload(b"%PDF-1.4 boleto", "boleto.pdf", "application/pdf",
                           ready_after=2.5)
        cw.agent_reply(conv["id"], text, attachments=[upload])
        # the request is recorded before the provider's fetch answers: wait for the fetch
        assert eventually(lambda: fetched, timeout=15)
        assert fetched == [200]
        [media] = fake.sent("POST", "/send/media")
        assert media["file"] == cw.url + upload["data_url"] and media.get("text", "") == text
        assert not [m for m in cw.messages(conv["id"]) if m["private"]]


@pytest.mark.parametrize("text", ["Segue o boleto", ""])
def test_an_agent_file_never_there_goes_without_it_and_the_agent_is_told(tmp_path, text):
    with FakeChatwoot(webhook_secret="inbox-secret") as cw:
        mirror = Mirror(make_config(cw, tmp_path, media_wait_seconds=0))
        try:
            with marias_conversation(cw, mirror) as (fake, conv):
                upload = cw.upload(b"%PDF-1.4", "boleto.pdf", "application/pdf",
                                   ready_after=3600)
                agent = cw.agent_reply(conv["id"], text, attachments=[upload])
                reason = "o arquivo boleto.pdf não ficou disponível no Chatwoot a tempo"
                if text:  # the words go; the note says what did not
                    assert eventually(lambda: fake.sent("POST", "/send/text"))
                    assert [b["text"] for b in fake.sent("POST", "/send/text")] == [text]
                    assert eventually(
                        lambda: [m for m in cw.messages(conv["id"]) if m["private"]])
                    [note] = [m for m in cw.messages(conv["id"]) if m["private"]]
                    assert note["content"] == ("Texto enviado ao cliente, sem o arquivo: "
                                               + reason)
                    assert note["content_attributes"]["in_reply_to"] == agent["id"]
                else:  # nothing could go: the agent's message shows failed, with the reason
                    def shown() -> dict[str, Any]:
                        return next(m for m in cw.messages(conv["id"])
                                    if m["id"] == agent["id"])
                    assert eventually(lambda: shown()["status"] == "failed")
                    assert shown()["content_attributes"]["external_error"] == reason
                    assert not fake.sent("POST", "/send/text")
                assert not fake.sent("POST", "/send/media")
        finally:
            mirror.close(timeout=1)


def test_a_texts_file_words_what_agents_read(tmp_path):
    """CHATWOOT_TEXTS_FILE reaches the kinds and the failure notes (config.texts is the one
    source: rendering, the delivery worker's notes)."""
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps({
        "kinds": {"reaction": "curtiu com {text}"},
        "not_delivered": "Não chegou: {reason}",
        "failures": {"131047": "janela de 24 h fechada"}}), encoding="utf-8")
    with FakeChatwoot() as cw:
        mirror = Mirror(make_config(cw, tmp_path, api_token=None, texts_file=str(texts)))
        try:
            adapter, fake, case = dialog360()
            body = original_text()
            body["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "Oi"
            handle_inbound(mirror, adapter, parsed(adapter, body), faq_bot)
            handle_inbound(mirror, adapter, parsed(adapter, reaction_to_original()), faq_bot)
            assert mirror.flush() and mirror.flush()
            failed = contract("dialog360/cloud_status_failed.json")
            failed["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = case["ids"][0]
            handle_inbound(mirror, adapter, parsed(adapter, failed), faq_bot)
            assert mirror.flush()
            [conv] = cw.conversations()
            shown = [m["content"] for m in cw.messages(conv["id"])]
            assert "curtiu com 👍" in shown
            assert "Não chegou: janela de 24 h fechada (131047)" in shown
        finally:
            mirror.close(timeout=1)


@pytest.mark.parametrize("case,expected", [
    ("uazapi_order.json",
     "Pedido:\nLoja Exemplo (3)\nTotal: BRL 159.30\nEntrega no sábado?"),
    ("uazapi_product.json",
     "Produto do catálogo: Camiseta azul M\nBRL 59.90\nhttps://loja.example.com/camiseta-azul-m"
     "\nTem no tamanho G?"),
])
def test_uazapi_orders_and_products_show_their_contents(chatwoot, case, expected):
    """issue #17: "a catalog order shows as [order message]". whatsmeow's OrderMessage has
    the count and the total, not the items (WhatsApp fetches them from the catalog)."""
    cw, mirror = chatwoot
    adapter, fake, _ = uazapi()
    asked = []
    handle_inbound(mirror, adapter, parsed(adapter, contract(f"uazapi/{case}")), asked.append)
    assert mirror.flush()
    [conv] = cw.conversations()
    [shown] = cw.messages(conv["id"])
    assert shown["content"] == expected and shown["message_type"] == 0
    assert len(asked) == 1  # the bot is asked: an order or a question about a product


@pytest.mark.parametrize("other_senders", [True, False])
def test_a_360dialog_campaign_sent_by_another_tool_shows_once_from_its_statuses(
        tmp_path, other_senders):
    """Cloud API never delivers a message another tool sent on the number through the API
    (a campaign sender, n8n), only its statuses. With D360_OTHER_SENDERS a status for a
    message the mirror neither sent nor has shows it once, as another integration's; our
    own reply's statuses never do, and the bot is not paused."""
    with FakeChatwoot() as cw:
        mirror = Mirror(make_config(cw, tmp_path, api_token=None))  # ticks not even asked
        try:
            adapter, fake, case = dialog360()
            adapter.mirrors_other_senders = other_senders
            handle_inbound(mirror, adapter, parsed(adapter, case["text"]), faq_bot)
            assert mirror.flush() and mirror.flush()
            [ours] = case["ids"]

            def receipt(provider_id: str, status: str) -> None:
                handle_inbound(mirror, adapter, parsed(
                    adapter, case["receipt"](provider_id, status)), faq_bot)
            for status in ("sent", "delivered", "read"):
                receipt("wamid.CAMPAIGN0001", status)
                receipt(ours, status)
            receipt("wamid.CAMPAIGN0001", "delivered")  # redelivered
            assert mirror.flush() and mirror.flush()
            [conv] = cw.conversations()
            shown = [(m["content"], m["message_type"]) for m in cw.messages(conv["id"])]
            campaign = ("[enviado por outra integração] [o provedor avisou do envio, mas não "
                        "do conteúdo]", 1)
            assert shown == [("Oi, vocês entregam no sábado?", 0),
                             ("Entregamos sim, Maria Souza!", 1)] + (
                [campaign] if other_senders else [])
            assert not mirror.is_paused(MARIA)
        finally:
            mirror.close(timeout=1)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_receipt_reaching_another_host_finds_its_message(tmp_path, request, backend):
    """The provider-id map lives in the shared store: host A sends the bot's reply and
    stops; host B gets the provider's receipts and a quoting reply, and finds the message
    in Chatwoot."""
    store = (f"sqlite:///{tmp_path}/shared.db" if backend == "sqlite"
             else request.getfixturevalue("redis_url"))
    with FakeChatwoot() as cw:
        adapter, fake, case = dialog360()
        host_a = Mirror(make_config(cw, tmp_path, store_url=store))
        try:
            handle_inbound(host_a, adapter, parsed(adapter, case["text"]), faq_bot)
            assert host_a.flush() and host_a.flush()
        finally:
            host_a.close(timeout=1)
        [sent] = case["ids"]
        host_b = Mirror(make_config(cw, tmp_path, store_url=store))
        try:
            adapter_b, _, _ = dialog360()
            handle_inbound(host_b, adapter_b, parsed(adapter_b, case["receipt"](sent, "read")),
                           faq_bot)
            reply = contract("dialog360/cloud_text_reply_context.json")
            reply["entry"][0]["changes"][0]["value"]["messages"][0]["context"]["id"] = sent
            handle_inbound(host_b, adapter_b, parsed(adapter_b, reply), lambda e: None)
            assert host_b.flush()
            [conv] = cw.conversations()
            bot = next(m for m in cw.messages(conv["id"])
                       if m["content"] == "Entregamos sim, Maria Souza!")
            assert bot["status"] == "read"
            assert cw.messages(conv["id"])[-1]["content_attributes"]["in_reply_to"] == bot["id"]
        finally:
            host_b.close(timeout=1)


def test_a_zpro_receipt_without_a_number_reaches_its_message_through_the_id_map(tmp_path):
    """Issue #30: Izing/Whaticket post acks from HandleMsgAck as ``{ack, messageId,
    externalKey, type}`` with no ``number``. The id map knows whose message it is: the
    ticks still reach the bot's reply in Chatwoot (with a user token: PATCH status)."""
    with FakeChatwoot() as cw:
        mirror = Mirror(make_config(cw, tmp_path))
        try:
            adapter, fake, case = zpro()
            handle_inbound(mirror, adapter, parsed(adapter, case["text"]), faq_bot)
            assert mirror.flush() and mirror.flush()
            [bot_id] = case["ids"][:]
            for status in ("delivered", "read"):
                ack = case["receipt"](bot_id, status)
                del ack["number"]  # as HandleMsgAck sends it
                assert handle_inbound(mirror, adapter, parsed(adapter, ack), faq_bot) == "status"
            assert mirror.flush() and mirror.flush()
            [conv] = cw.conversations()
            bot = cw.messages(conv["id"])[1]
            assert bot["content"] == "Entregamos sim, Maria Souza!"
            assert bot["status"] == "read"
            patches = [r for r in cw.requests if r[0] == "PATCH"]
            assert patches and all(str(bot["id"]) in r[1] for r in patches)
        finally:
            mirror.close(timeout=1)
