"""Each adapter end to end on the emulator: a provider webhook into a Flask app on loopback,
the bot's reply sent through the provider and mirrored, an agent's reply relayed back
through the same provider, files both ways. Plus the glue's own rules."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import requests
from conftest import contract, eventually
from fake_provider import FakeProvider
from flask import Flask
from werkzeug.serving import make_server

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.errors import ConfigError
from chatwoot_mirror.flask import create_blueprint
from chatwoot_mirror.integrations import (
    Dialog360Adapter,
    InboundHandler,
    UazapiAdapter,
    ZproAdapter,
    handle_inbound,
)
from chatwoot_mirror.integrations.base import BotReply, InboundEvent
from chatwoot_mirror.integrations.flask import create_provider_blueprint
from chatwoot_mirror.relay import AgentAttachment, AgentMessage
from chatwoot_mirror.testing import FakeChatwoot
from chatwoot_mirror.webhooks import WebhookRequest

MARIA = "5511988887777"
UAZ_TOKEN = "00000000-0000-4000-8000-000000000001"




def numbered(answer: dict[str, Any], put_id: Any, prefix: str, ids: list[str]) -> Any:
    """A send route answering ``answer`` with a fresh message id each time (kept in
    ``ids``), as the provider gives every message its own."""
    def route(request: Any) -> tuple[int, Any, str]:
        ids.append(f"{prefix}{len(ids) + 1:04d}")
        body = json.loads(json.dumps(answer))
        put_id(body, ids[-1])
        return 200, body, "application/json"
    return route


def faq_bot(event: InboundEvent) -> str:
    return f"Entregamos sim, {event.name}!"


# -- the three providers, as the host wires them ---------------------------------------------


def dialog360() -> tuple[Dialog360Adapter, FakeProvider, dict[str, Any]]:
    adapter = Dialog360Adapter("d360-key", webhook_secret="hook-secret")
    info = contract("dialog360/media_url_response.json")
    ids: list[str] = []

    def receipt(provider_id: str, status: str) -> dict[str, Any]:
        body = contract("dialog360/cloud_status_delivered.json")
        body["entry"][0]["changes"][0]["value"]["statuses"][0].update(id=provider_id,
                                                                      status=status)
        return body
    fake = FakeProvider({
        ("POST", "/messages"): numbered(
            contract("dialog360/send_text_response.json"),
            lambda body, i: body["messages"][0].update(id=i), "wamid.TEST", ids),
        ("GET", "/1234567890123456"): (200, info, "application/json"),
        ("GET", "/whatsapp_business/attachments/"): (200, b"\xff\xd8jpeg", "image/jpeg"),
    }).mount_on(adapter.session, "https://waba-v2.360dialog.io")
    return adapter, fake, {
        "text": contract("dialog360/cloud_text.json"),
        "image": contract("dialog360/cloud_image.json"),
        "owner": contract("dialog360/cloud_smb_message_echo.json"),
        "headers": {"X-Webhook-Secret": "hook-secret"}, "query": "",
        "send_path": "/messages", "text_of": lambda body: body.get("text", {}).get("body"),
        "ids": ids, "receipt": receipt,
    }


def uazapi() -> tuple[UazapiAdapter, FakeProvider, dict[str, Any]]:
    adapter = UazapiAdapter("https://example.uazapi.com", UAZ_TOKEN)
    download = contract("uazapi/uazapi_message_download_response.json")
    ids: list[str] = []

    def receipt(provider_id: str, status: str) -> dict[str, Any]:
        body = contract("uazapi/uazapi_messages_update.json")
        body["state"] = body["event"]["Type"] = status.capitalize()
        body["event"]["MessageIDs"] = [provider_id]
        return body
    fake = FakeProvider({
        ("POST", "/send/text"): numbered(
            contract("uazapi/uazapi_send_text_response.json"),
            lambda body, i: body.update(messageid=i, id=f"5511900001111:{i}"), "3EB0TEST", ids),
        ("POST", "/send/media"): (200, contract("uazapi/uazapi_send_media_response.json"),
                                  "application/json"),
        ("POST", "/message/download"): (200, download, "application/json"),
        ("GET", "/files/AC3D4FE37D20ED8957FACCDAD9368A4A.jpg"): (200, b"\xff\xd8jpeg",
                                                                 "image/jpeg"),
    }).mount_on(adapter.session, "https://example.uazapi.com")
    return adapter, fake, {
        "text": contract("uazapi/uazapi_text.json"),
        "image": contract("uazapi/uazapi_image.json"),
        "owner": contract("uazapi/uazapi_fromme.json"),
        "headers": {}, "query": "",
        "send_path": "/send/text", "text_of": lambda body: body.get("text"),
        "ids": ids, "receipt": receipt,
    }


def zpro() -> tuple[ZproAdapter, FakeProvider, dict[str, Any]]:
    adapter = ZproAdapter("https://api.zpro.example.com", "api-1", "jwt", webhook_secret="zz")
    fake = FakeProvider({
        ("POST", "/v2/api/external/api-1"): (200, {"message": "Message add queue"},
                                             "application/json"),
        ("POST", "/v2/api/external/api-1/url"): (200, {"message": "Message add queue"},
                                                 "application/json"),
    }).mount_on(adapter.session, "https://api.zpro.example.com")
    owner = contract("zpro/whaticket_saas_connection_webhook_message.json")
    owner.update(fromMe=True, mensagem="Oi Maria, aqui é a Bia da loja")
    acks = {"sent": 1, "delivered": 2, "read": 3, "failed": -1}

    def receipt(provider_id: str, status: str) -> dict[str, Any]:
        return {**contract("zpro/izing_hook_message_status.json"), "externalKey": provider_id,
                "ack": acks[status]}
    return adapter, fake, {
        "text": contract("zpro/whaticket_saas_connection_webhook_message.json"),
        "image": None, "owner": owner, "headers": {}, "query": "?token=zz",
        "send_path": "/v2/api/external/api-1", "text_of": lambda body: body.get("body"),
        # Z-PRO answers no id: the externalKey we send is the id its callbacks carry
        "ids": fake_keys(fake), "receipt": receipt,
    }


class fake_keys(list):  # noqa: N801 - reads like the list it is
    """The ``externalKey`` of each message sent to a fake Z-PRO, in order."""

    def __init__(self, fake: FakeProvider) -> None:
        super().__init__()
        self.fake = fake

    def __getitem__(self, index: Any) -> Any:
        return [body["externalKey"] for body in self.fake.sent(
            "POST", "/v2/api/external/api-1")][index]


PROVIDERS = {"dialog360": dialog360, "uazapi": uazapi, "zpro": zpro}


class Host:
    """The host's Flask app: Chatwoot's blueprint and the provider's, on loopback."""

    def __init__(self, mirror: Mirror, adapter, bot) -> None:
        app = Flask(__name__)
        app.register_blueprint(create_blueprint(mirror), url_prefix="/chatwoot")
        app.register_blueprint(create_provider_blueprint(mirror, adapter, bot),
                               url_prefix=f"/{adapter.name}")
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        base = f"http://127.0.0.1:{self.server.server_port}"
        self.chatwoot_url = f"{base}/chatwoot/webhook"
        self.provider_url = f"{base}/{adapter.name}/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def chatwoot(tmp_path):
    with FakeChatwoot(webhook_secret="inbox-secret") as cw:
        config = Config(
            url=cw.url, inbox_identifier=cw.inbox_identifier, account_id=cw.account_id,
            bot_token=cw.bot_token, api_token=cw.user_token, webhook_secret="inbox-secret",
            db_path=str(tmp_path / "m.db"), max_requests_per_minute=0,
            retry_base_seconds=0.02, retry_max_seconds=0.1,
        )
        mirror = Mirror(config)
        yield cw, mirror
        mirror.close(timeout=1)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_customer_bot_agent_loop(chatwoot, provider):
    cw, mirror = chatwoot
    adapter, fake, case = PROVIDERS[provider]()
    host = Host(mirror, adapter, faq_bot)
    cw.webhook_url = host.chatwoot_url
    post = lambda body: requests.post(  # noqa: E731 - the provider calling our webhook
        host.provider_url + case["query"], data=json.dumps(body), headers=case["headers"],
        timeout=5)
    try:
        answer = post(case["text"])
        # the provider is answered at once; the bot answers off its request
        assert answer.status_code == 200 and answer.json()["events"] == ["queued"]
        assert mirror.flush() and eventually(lambda: fake.sent("POST", case["send_path"]))
        first = fake.sent("POST", case["send_path"])[0]
        assert case["text_of"](first) == "Entregamos sim, Maria Souza!"
        assert MARIA in json.dumps(first)
        assert mirror.flush()
        [conv] = cw.conversations()
        shown = [(m["content"], (m["sender"] or {}).get("type")) for m in cw.messages(conv["id"])]
        customer_text = {"dialog360": "Oi, vocês entregam no sábado?",
                         "uazapi": "Oi, vocês entregam no sábado?",
                         "zpro": "Quero a segunda via do boleto"}[provider]
        assert shown == [(customer_text, "contact"),
                         ("Entregamos sim, Maria Souza!", "agent_bot")]

        assert post(case["text"]).json()["events"] == ["duplicate"]  # provider redelivery

        cw.agent_reply(conv["id"], "Olá, sou a Ana")                   # a human takes over
        assert eventually(lambda: mirror.is_paused(MARIA))
        assert eventually(lambda: len(fake.sent("POST", case["send_path"])) == 2)
        assert case["text_of"](fake.sent("POST", case["send_path"])[1]) == "Olá, sou a Ana"
        # accepted is not delivered: Chatwoot shows "sent" until the provider's receipt
        assert [m["status"] for m in cw.messages(conv["id"])
                if m["content"] == "Olá, sou a Ana"] == ["sent"]
        agent_id = case["ids"][1]
        # out of order: late receipts after "read" (Chatwoot itself only refuses
        # read -> delivered; read -> sent it would take)
        for status in ("read", "delivered", "sent"):
            assert post(case["receipt"](agent_id, status)).json()["events"] == ["status"]
        assert mirror.flush()
        assert [m["status"] for m in cw.messages(conv["id"])
                if m["content"] == "Olá, sou a Ana"] == ["read"]
        # the bot's own reply is found by its provider id too
        assert post(case["receipt"](case["ids"][0], "failed")).status_code == 200
        assert mirror.flush()
        bot_reply = next(m for m in cw.messages(conv["id"])
                         if m["content"] == "Entregamos sim, Maria Souza!")
        assert bot_reply["status"] == "failed"
        assert bot_reply["content_attributes"]["external_error"]

        again = dict(case["text"])
        again = json.loads(json.dumps(again, ensure_ascii=False).replace(customer_text,
                                                                         "E o frete?"))
        if provider == "zpro":
            again["ticketData"]["updatedAt"] = "2026-01-01T12:02:00.000Z"
        elif provider == "uazapi":
            again["message"]["messageid"] = "AC00000000000000000000000000FRETE"
        else:
            again["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = "wamid.frete"
        assert post(again).json()["events"] == ["paused"]              # the bot is silent
        assert mirror.flush()
        assert cw.messages(conv["id"])[-1]["content"] == "E o frete?"
        assert len(fake.sent("POST", case["send_path"])) == 2
    finally:
        host.close()


@pytest.mark.parametrize("provider", ["dialog360", "uazapi"])
def test_customer_file_is_uploaded_to_chatwoot(chatwoot, provider):
    cw, mirror = chatwoot
    adapter, fake, case = PROVIDERS[provider]()
    handler = InboundHandler(mirror, adapter, lambda e: None)
    body = json.dumps(case["image"]).encode()
    query = {"token": "zz"} if case["query"] else {}
    assert handler.handle(WebhookRequest(case["headers"], body, query)).status == 200
    assert mirror.flush()
    [conv] = cw.conversations()
    [message] = cw.messages(conv["id"])
    assert message["content"] == "Foto do produto com defeito"
    [attachment] = message["attachments"]
    assert attachment["file_type"] == "image" and attachment["file_size"] == 6
    assert cw.blob(attachment["data_url"])["content_type"] == "image/jpeg"


def test_file_over_the_limit_becomes_a_note(tmp_path):
    with FakeChatwoot() as cw:
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        account_id=cw.account_id, bot_token=cw.bot_token,
                        db_path=str(tmp_path / "m.db"), media_max_mb=0.000001,
                        max_requests_per_minute=0)
        with Mirror(config) as mirror:
            adapter, fake, case = uazapi()
            handle_inbound(mirror, adapter, adapter.parse({}, json.dumps(
                case["image"]).encode())[0], lambda e: None)
            assert mirror.flush()
            [conv] = cw.conversations()
            [message] = cw.messages(conv["id"])
            assert message["content"] == ("Foto do produto com defeito\n"
                                          "[image de 0.2 MB não copiado: acima do limite]")
            assert not message.get("attachments")


def test_provider_refusing_a_file_becomes_a_note(chatwoot):
    cw, mirror = chatwoot
    adapter, fake, case = dialog360()
    fake.routes[("GET", "/1234567890123456")] = (404, {"error": {"message": "expired"}},
                                                 "application/json")
    event = adapter.parse({}, json.dumps(case["image"]).encode())[0]
    handle_inbound(mirror, adapter, event, lambda e: None)
    assert mirror.flush()
    [conv] = cw.conversations()
    assert cw.messages(conv["id"])[0]["content"].endswith(
        "[image não copiado: o provedor não entregou o arquivo]")
    assert len([r for r in fake.requests if r.url.endswith("/1234567890123456")]) == 1


def test_agent_attachment_is_sent_as_media(chatwoot):
    cw, mirror = chatwoot
    adapter, fake, case = uazapi()
    host = Host(mirror, adapter, faq_bot)
    cw.webhook_url = host.chatwoot_url
    try:
        handle_inbound(mirror, adapter, adapter.parse({}, json.dumps(case["text"]).encode())[0],
                       lambda e: None)
        assert mirror.flush()
        [conv] = cw.conversations()
        # as Attachment#push_event_data renders an upload: no name beside the file, which
        # the ActiveStorage URL ends with
        upload = cw.upload(b"%PDF-1.4 boleto", "boleto março.pdf", "application/pdf")
        assert upload["data_url"].endswith("/boleto%20mar%C3%A7o.pdf")
        cw.agent_reply(conv["id"], "Segue o boleto", attachments=[upload])
        assert eventually(lambda: fake.sent("POST", "/send/media"))
        [media] = fake.sent("POST", "/send/media")
        assert media["type"] == "document" and media["text"] == "Segue o boleto"
        assert media["file"] == cw.url + upload["data_url"]
        assert media["docName"] == "boleto março.pdf"
        assert media["number"] == MARIA
    finally:
        host.close()


def test_owner_typing_on_the_phone_pauses_the_bot(chatwoot):
    cw, mirror = chatwoot
    for factory in (dialog360, uazapi, zpro):
        adapter, fake, case = factory()
        event = adapter.parse({}, json.dumps(case["owner"]).encode())[0]
        assert handle_inbound(mirror, adapter, event, faq_bot) == "owner"
        assert mirror.is_paused(MARIA)
        mirror.resume(MARIA)
    assert mirror.flush()
    [conv] = cw.conversations()
    contents = [m["content"] for m in cw.messages(conv["id"])]
    assert contents[0] == "[enviado pelo celular] Oi Maria, já vi seu pedido"
    assert all(c.startswith("[enviado pelo celular] ") for c in contents)


def test_keyword_hands_over_and_the_bot_is_not_called(chatwoot):
    cw, mirror = chatwoot
    adapter, fake, case = dialog360()
    calls = []
    event = adapter.parse({}, json.dumps(contract(
        "dialog360/cloud_interactive_button_reply.json")).encode())[0]  # "Falar com atendente"
    assert handle_inbound(mirror, adapter, event, calls.append) == "paused"
    assert calls == [] and mirror.is_paused(MARIA)
    assert mirror.flush() and mirror.flush()
    sent = [b["text"]["body"] for b in fake.sent("POST", "/messages")]
    assert sent == [mirror.config.text("handoff")]


def test_bot_failure_hands_over_instead_of_silence(chatwoot):
    cw, mirror = chatwoot
    adapter, fake, case = uazapi()

    def broken(event):
        raise RuntimeError("LLM timeout")

    event = adapter.parse({}, json.dumps(case["text"]).encode())[0]
    assert handle_inbound(mirror, adapter, event, broken) == "handed_off"
    assert mirror.is_paused(MARIA)
    assert mirror.flush() and mirror.flush()
    [conv] = cw.conversations()
    assert [label for label in cw.emulator.conversations[conv["id"]].labels] == ["bot-handoff"]
    assert cw.emulator.conversations[conv["id"]].custom_attributes["handoff_reason"] == (
        "ai_failure")
    mirror.resume(MARIA)
    assert handle_inbound(mirror, adapter, event, broken, handoff_on_error=False) == "duplicate"
    other = InboundEvent(kind="message", contact=MARIA, text="oi", message_id="x2")
    assert handle_inbound(mirror, adapter, other, broken, handoff_on_error=False) == "bot_failed"
    assert not mirror.is_paused(MARIA)


def test_bot_reply_with_files_and_a_handoff(chatwoot):
    cw, mirror = chatwoot
    adapter, fake, case = uazapi()
    reply = BotReply(messages=["Veja o catálogo", AgentAttachment(
        "https://files.example.com/catalogo.jpg", "image")], handoff="user_request",
        note="pediu orçamento")
    event = adapter.parse({}, json.dumps(case["text"]).encode())[0]
    assert handle_inbound(mirror, adapter, event, lambda e: reply) == "handed_off"
    assert mirror.flush() and mirror.flush()
    assert [b["text"] for b in fake.sent("POST", "/send/text")] == [
        "Veja o catálogo", mirror.config.text("handoff")]
    assert [b["file"] for b in fake.sent("POST", "/send/media")] == [
        "https://files.example.com/catalogo.jpg"]
    [conv] = cw.conversations()
    contents = [m["content"] for m in cw.messages(conv["id"]) if not m["private"]]
    assert contents[1:3] == ["Veja o catálogo", "[image] https://files.example.com/catalogo.jpg"]


def test_echoes_and_statuses_change_nothing(chatwoot):
    cw, mirror = chatwoot
    adapter, fake, case = uazapi()
    for name in ("uazapi_fromme_api.json", "uazapi_messages_update.json"):
        for event in adapter.parse({}, json.dumps(contract(f"uazapi/{name}")).encode()):
            assert handle_inbound(mirror, adapter, event, faq_bot) in ("echo", "status")
    assert mirror.flush()
    assert cw.conversations() == [] and fake.requests == []


def test_disabled_mirroring_still_answers_directly(tmp_path):
    mirror = Mirror(Config(enabled=False))
    adapter, fake, case = uazapi()
    event = adapter.parse({}, json.dumps(case["text"]).encode())[0]
    assert handle_inbound(mirror, adapter, event, faq_bot) == "answered"
    assert [b["text"] for b in fake.sent("POST", "/send/text")] == ["Entregamos sim, Maria Souza!"]


def test_inbound_handler_answers_bad_input_with_4xx(chatwoot):
    cw, mirror = chatwoot
    adapter, fake, case = uazapi()
    handler = InboundHandler(mirror, adapter, faq_bot, max_bytes=10_000)
    good = json.dumps(case["text"]).encode()
    assert handler.handle(WebhookRequest({}, b"x" * 10_001)).status == 413
    assert handler.handle(WebhookRequest({}, b"not json")).status == 401  # no token in it
    forged = json.loads(good)
    forged["token"] = "nope"
    assert handler.handle(WebhookRequest({}, json.dumps(forged).encode())).status == 401
    unknown = handler.handle(WebhookRequest({}, json.dumps(
        {"EventType": "presence", "token": UAZ_TOKEN}).encode()))
    assert (unknown.status, unknown.body["events"]) == (200, [])
    d360, _, _ = dialog360()
    d360_handler = InboundHandler(mirror, d360, faq_bot)
    bad_json = d360_handler.handle(WebhookRequest({"X-Webhook-Secret": "hook-secret"}, b"{x"))
    assert bad_json.status == 400
    with pytest.raises(ConfigError, match="webhook_secret"):
        InboundHandler(mirror, Dialog360Adapter("k"), faq_bot)


def test_agent_reply_goes_out_through_the_channel_the_contact_used(chatwoot):
    cw, mirror = chatwoot
    first, first_fake, first_case = dialog360()
    second, second_fake, second_case = uazapi()
    handle_inbound(mirror, first, first.parse({}, json.dumps(first_case["text"]).encode())[0],
                   lambda e: None)
    other = InboundEvent(kind="message", contact="5511977776666", text="oi", message_id="u1")
    handle_inbound(mirror, second, other, lambda e: None)
    assert mirror.flush()
    by_contact = {c["phone_number"]: c["id"] for c in cw.contacts()}
    conversations = {c["meta"]["sender"]["id"]: c["id"] for c in cw.conversations()}
    for number, phone in enumerate(("+5511988887777", "+5511977776666")):
        # what the Chatwoot webhook queues for an agent's reply to that contact
        identity = mirror.store.contact_identity(mirror.identify(phone).key)
        mirror.relay(AgentMessage(contact=identity, text=f"para {phone}",
                                  chatwoot_message_id=100 + number,
                                  conversation_id=conversations[by_contact[phone]]))
    assert mirror.flush()
    assert [b["text"]["body"] for b in first_fake.sent("POST", "/messages")] == [
        "para +5511988887777"]
    assert [b["text"] for b in second_fake.sent("POST", "/send/text")] == [
        "para +5511977776666"]


def test_bot_reply_goes_back_the_way_the_message_came(tmp_path):
    """Replies queued while the contact switches channel still go out where each message
    came from (the router's 'last channel' is only for agents' replies)."""
    with FakeChatwoot() as cw:
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        account_id=cw.account_id, bot_token=cw.bot_token,
                        db_path=str(tmp_path / "m.db"), max_requests_per_minute=0)
        mirror = Mirror(config, start=False)  # nothing is sent until both are queued
        uaz, uaz_fake, uaz_case = uazapi()
        d360, d360_fake, d360_case = dialog360()
        for adapter, case in ((uaz, uaz_case), (d360, d360_case)):
            event = adapter.parse({}, json.dumps(case["text"]).encode())[0]
            assert handle_inbound(mirror, adapter, event, faq_bot) == "answered"
        mirror.start()
        assert mirror.flush() and mirror.flush()
        assert [b["text"] for b in uaz_fake.sent("POST", "/send/text")] == [
            "Entregamos sim, Maria Souza!"]
        assert [b["text"]["body"] for b in d360_fake.sent("POST", "/messages")] == [
            "Entregamos sim, Maria Souza!"]
        mirror.close(timeout=1)


def test_customer_file_through_the_public_api_without_a_bot_token(tmp_path):
    with FakeChatwoot() as cw:
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        db_path=str(tmp_path / "m.db"), max_requests_per_minute=0)
        with Mirror(config) as mirror:
            adapter, fake, case = uazapi()
            event = adapter.parse({}, json.dumps(case["image"]).encode())[0]
            handle_inbound(mirror, adapter, event, lambda e: None)
            assert mirror.flush()
        [conv] = cw.conversations()
        [message] = cw.messages(conv["id"])
        assert message["content"] == "Foto do produto com defeito"
        assert [cw.blob(a["data_url"])["content_type"]
                for a in message["attachments"]] == ["image/jpeg"]
        assert any(path.startswith("/public/api/v1/") and method == "POST"
                   and path.endswith("/messages") for method, path, _ in cw.requests)


def test_closed_mirror_still_answers_directly_once(tmp_path):
    config = Config(url="http://127.0.0.1:9", inbox_identifier="x",
                    db_path=str(tmp_path / "m.db"))
    mirror = Mirror(config, start=False)
    mirror.close(timeout=0)
    assert mirror.closed
    adapter, fake, case = uazapi()
    event = adapter.parse({}, json.dumps(case["text"]).encode())[0]
    assert handle_inbound(mirror, adapter, event, faq_bot) == "answered"
    assert [b["text"] for b in fake.sent("POST", "/send/text")] == ["Entregamos sim, Maria Souza!"]


def test_a_360dialog_rate_limit_refusal_is_retried_not_dropped(chatwoot):
    """Issue #17: Cloud API answers a throttled send with HTTP 400 and code 130429 (Meta's
    "WhatsApp error codes"); the reply waits and goes out, it is not dropped."""
    cw, mirror = chatwoot
    adapter, fake, case = dialog360()
    answers = iter([(400, {"error": {"message": "(#130429) Rate limit hit", "code": 130429,
                                     "type": "OAuthException"}}, "application/json")])
    sent_ok = (200, contract("dialog360/send_text_response.json"), "application/json")
    fake.routes[("POST", "/messages")] = lambda request: next(answers, sent_ok)
    event = adapter.parse({}, json.dumps(case["text"]).encode())[0]
    assert handle_inbound(mirror, adapter, event, faq_bot) == "answered"
    assert mirror.flush(timeout=10)
    attempts = [r for r in fake.requests if r.url.endswith("/messages")]
    assert len(attempts) == 2  # refused once, sent on the retry
    assert json.loads(attempts[-1].body)["text"]["body"] == "Entregamos sim, Maria Souza!"
