"""Typebot as the bot: a whole conversation against the Chat API (responses), rendering,
handoff markers, and the handoff route an HTTP Request block calls."""

from __future__ import annotations

import json

import pytest
import responses
from conftest import CONTRACTS, contract
from jsonschema import Draft202012Validator

from chatwoot_mirror.integrations import InboundEvent, ProviderError
from chatwoot_mirror.integrations.typebot import (
    TypebotBot,
    TypebotHandoffHandler,
    markdown_to_whatsapp,
    render,
    rich_text_to_whatsapp,
)
from chatwoot_mirror.relay import AgentAttachment
from chatwoot_mirror.store import SQLiteStore
from chatwoot_mirror.webhooks import WebhookRequest

VIEWER = "https://typebot.example.com"
START = f"{VIEWER}/api/v1/typebots/loja-flow/startChat"
SESSION = "cm1sessionfake00000000001"
CONTINUE = f"{VIEWER}/api/v1/sessions/{SESSION}/continueChat"
MARIA = "5511988887777"


def event(text: str) -> InboundEvent:
    return InboundEvent(kind="message", contact=MARIA, text=text, name="Maria Souza",
                        message_id=f"wamid.{text}")


@pytest.fixture(scope="module")
def spec() -> dict:
    return contract("typebot/typebot-chat-api-openapi.json")


def request_schema(spec: dict, path: str) -> Draft202012Validator:
    schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": spec.get("components", {})})


def test_every_contract_file_is_used():
    used = {
        "typebot-chat-api-openapi.json", "typebot_startchat_response.json",
        "typebot_startchat_response_markdown.json", "typebot_continuechat_response.json",
        "typebot_continuechat_response_end.json",
        "typebot_continuechat_response_whaticket_trigger.json",
        "typebot_error_session_not_found.json", "typebot_error_session_expired.json",
        "typebot_startchat_request.json", "typebot_startchat_request_markdown.json",
        "typebot_continuechat_request.json", "typebot_continuechat_request_attachment.json",
        "typebot_continuechat_request_string.json",
    }
    assert {p.name for p in (CONTRACTS / "typebot").glob("*.json")} == used


def test_contract_request_examples_are_what_our_schema_check_accepts(spec):
    """Guards the schema check used below: it accepts the published examples and refuses
    the legacy string form the spec does not allow."""
    start = request_schema(spec, "/v1/typebots/{publicId}/startChat")
    start.validate(contract("typebot/typebot_startchat_request.json"))
    start.validate(contract("typebot/typebot_startchat_request_markdown.json"))
    cont = request_schema(spec, "/v1/sessions/{sessionId}/continueChat")
    cont.validate(contract("typebot/typebot_continuechat_request.json"))
    cont.validate(contract("typebot/typebot_continuechat_request_attachment.json"))
    assert not cont.is_valid(contract("typebot/typebot_continuechat_request_string.json"))


def test_rich_text_renders_as_whatsapp_text():
    reply, choices = render(contract("typebot/typebot_startchat_response.json"))
    assert reply.messages == [
        "Olá, *Maria Souza*! 👋",
        "Sou o assistente da Loja Exemplo. Veja nosso catálogo "
        "(https://loja.example.com/catalogo).\n\n• Pedidos\n• Boletos",
        AgentAttachment("https://files.example.com/banner.png", "image"),
        "1. Fazer um pedido\n2. Falar com atendente",
    ]
    assert choices == ["Fazer um pedido", "Falar com atendente"]
    assert reply.handoff is None


def test_markdown_renders_the_same():
    reply, _ = render(contract("typebot/typebot_startchat_response_markdown.json"))
    assert reply.messages == [
        "Olá, *Maria Souza*! 👋",
        "Sou o assistente da Loja Exemplo. Veja nosso catálogo "
        "(https://loja.example.com/catalogo).\n\n• Pedidos\n• Boletos",
    ]
    assert markdown_to_whatsapp("*it* and ~~gone~~ and [https://a.b](https://a.b)") == (
        "_it_ and ~gone~ and https://a.b")


def test_marks_and_lists():
    nodes = [
        {"type": "p", "children": [{"text": "a "}, {"text": "b ", "italic": True},
                                   {"text": "c", "bold": True, "strikethrough": True}]},
        {"type": "ol", "children": [{"type": "li", "children": [
            {"type": "lic", "children": [{"text": "one"}]}]}]},
    ]
    assert rich_text_to_whatsapp(nodes) == "a _b_ ~*c*~\n1. one"


def test_whaticket_trigger_is_a_handoff_never_sent():
    reply, _ = render(contract("typebot/typebot_continuechat_response_whaticket_trigger.json"))
    assert reply.messages == ["Vou te passar para o setor financeiro."]
    assert reply.handoff == "typebot_handoff" and reply.note == "Typebot: queueId=2"


@responses.activate
def test_a_whole_conversation(spec, tmp_path):
    store = SQLiteStore(str(tmp_path / "s.db"))
    bot = TypebotBot(VIEWER, "loja-flow", store=store)
    start = contract("typebot/typebot_startchat_response.json")
    responses.post(START, json=start)
    responses.post(CONTINUE, json=contract("typebot/typebot_continuechat_response.json"))
    responses.post(CONTINUE, json=contract("typebot/typebot_continuechat_response_end.json"))

    first = bot(event("Oi"))
    assert first.messages[0] == "Olá, *Maria Souza*! 👋"
    sent = json.loads(responses.calls[0].request.body)
    request_schema(spec, "/v1/typebots/{publicId}/startChat").validate(sent)
    assert sent["message"] == {"type": "text", "text": "Oi"}
    # ours, and Whaticket's (Z-PRO's Typebot integration): number, pushName (issue #17)
    assert sent["prefilledVariables"] == {"phone": MARIA, "name": "Maria Souza",
                                          "number": MARIA, "pushName": "Maria Souza"}
    assert json.loads(store.get_value("typebot:loja-flow", MARIA, 0))["id"] == SESSION

    second = bot(event("1"))  # a number picks the listed choice
    asked = json.loads(responses.calls[1].request.body)
    request_schema(spec, "/v1/sessions/{sessionId}/continueChat").validate(asked)
    assert asked["message"] == {"type": "text", "text": "Fazer um pedido"}
    assert second.messages == ["Qual produto você deseja?"]

    third = bot(event("Fones"))
    assert third.messages == [
        "Certo! Vou transferir você para um atendente humano. Aguarde um momento."]
    assert store.get_value("typebot:loja-flow", MARIA, 0) is None  # the flow ended

    responses.post(START, json=start)
    bot(event("Oi de novo"))  # the next message starts the flow again
    assert responses.calls[-1].request.url == START


@responses.activate
@pytest.mark.parametrize("error", ["typebot_error_session_not_found.json",
                                   "typebot_error_session_expired.json"])
def test_a_lost_session_starts_again_with_the_same_message(error):
    bot = TypebotBot(VIEWER, "loja-flow")
    responses.post(START, json=contract("typebot/typebot_startchat_response.json"))
    bot(event("Oi"))
    responses.post(CONTINUE, status=404, json=contract(f"typebot/{error}"))
    responses.post(START, json=contract("typebot/typebot_continuechat_response.json") | {
        "sessionId": "cm1sessionfake00000000009"})
    reply = bot(event("quero um fone"))
    assert reply.messages == ["Qual produto você deseja?"]
    assert [c.request.url for c in responses.calls] == [START, CONTINUE, START]
    assert json.loads(responses.calls[-1].request.body)["message"]["text"] == "quero um fone"


@responses.activate
def test_handoff_marker_drops_the_session():
    bot = TypebotBot(VIEWER, "loja-flow")
    responses.post(START, json=contract("typebot/typebot_startchat_response.json"))
    bot(event("Oi"))
    responses.post(CONTINUE, json=contract(
        "typebot/typebot_continuechat_response_whaticket_trigger.json") | {
        "input": {"id": "i", "type": "text input", "options": {}}})
    reply = bot(event("2"))
    assert reply.handoff == "typebot_handoff"
    assert bot.store.get_value("typebot:loja-flow", MARIA, 0) is None


@responses.activate
def test_typebot_down_raises_for_the_handoff_on_error():
    responses.post(START, status=502, body="bad gateway")
    with pytest.raises(ProviderError) as down:
        TypebotBot(VIEWER, "loja-flow")(event("Oi"))
    assert down.value.retryable


class _Mirror:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def handoff(self, contact, reason, note=None):
        self.calls.append((contact, reason, note))
        return True


def test_handoff_route_authenticates_and_hands_over():
    mirror = _Mirror()
    handler = TypebotHandoffHandler(mirror, "tb-secret")  # type: ignore[arg-type]
    body = json.dumps({"phone": MARIA, "note": "quer boleto"}).encode()
    assert handler.handle(WebhookRequest({}, body)).status == 401
    assert handler.handle(WebhookRequest({"Authorization": "Bearer nope"}, body)).status == 401
    ok = handler.handle(WebhookRequest({"Authorization": "Bearer tb-secret"}, body))
    assert (ok.status, ok.body) == (200, {"ok": True, "handed_off": True})
    assert mirror.calls == [(MARIA, "typebot_request", "quer boleto")]
    via_query = handler.handle(WebhookRequest({}, b'{"phone": "1"}', {"token": "tb-secret"}))
    assert via_query.status == 200
    for bad in (b"nope", b"[]", b"{}", b'{"phone": ""}', b'{"phone": {"a": 1}}'):
        assert handler.handle(WebhookRequest({"Authorization": "Bearer tb-secret"},
                                             bad)).status == 400


@responses.activate
def test_a_paused_wait_block_goes_on_after_the_wait(spec):
    """Issue #17: a Wait block set to pause the flow answers with a ``wait`` client-side
    action that ``expectsDedicatedReply`` (typebot-chat-api-openapi.json, clientSideActions
    of type wait); the flow continues only when the client calls continueChat without a
    message after the wait, which the bot now does, keeping the bubbles in order."""
    start = contract("typebot/typebot_startchat_response.json")
    paused = {**start, "input": None, "clientSideActions": [{
        "type": "wait", "wait": {"secondsToWaitFor": 0.01}, "expectsDedicatedReply": True,
        "lastBubbleBlockId": "bubble-1"}]}
    after = contract("typebot/typebot_continuechat_response_end.json")
    responses.post(START, json=paused)
    responses.post(CONTINUE, json=after)
    reply = TypebotBot(VIEWER, "loja-flow")(event("Oi"))
    assert [c.request.url for c in responses.calls] == [START, CONTINUE]
    resumed = json.loads(responses.calls[1].request.body)
    assert "message" not in resumed  # no customer text is spent on the wait
    request_schema(spec, "/v1/sessions/{sessionId}/continueChat").validate(resumed)
    first = render(paused)[0].messages
    assert reply.messages[:len(first)] == first
    assert reply.messages[len(first):] == render(after)[0].messages
