"""The whole handoff loop on the emulator: real signed webhooks into a Flask app on loopback."""

from __future__ import annotations

import threading

import pytest
from conftest import eventually
from flask import Flask
from werkzeug.serving import make_server

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.flask import create_blueprint
from chatwoot_mirror.relay import AgentMessage, RelayRejected
from chatwoot_mirror.testing import FakeChatwoot

PHONE = "+55 11 98765-4321"


class HostApp:
    """A host bot: Flask app with the blueprint mounted, served on a free loopback port."""

    def __init__(self, mirror: Mirror) -> None:
        app = Flask(__name__)
        app.register_blueprint(create_blueprint(mirror), url_prefix="/chatwoot")
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/chatwoot/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()




@pytest.fixture
def loop(tmp_path):
    with FakeChatwoot(webhook_secret="inbox-secret", shuffle_webhooks=True) as cw:
        config = Config(
            url=cw.url, inbox_identifier=cw.inbox_identifier, account_id=cw.account_id,
            bot_token=cw.bot_token, api_token=cw.user_token, webhook_secret="inbox-secret",
            db_path=str(tmp_path / "m.db"), max_requests_per_minute=0,
            retry_base_seconds=0.02, retry_max_seconds=0.1,
        )
        mirror = Mirror(config)
        sent: list[AgentMessage] = []
        mirror.on_agent_message(lambda m: sent.append(m) or f"wamid.{len(sent)}")
        host = HostApp(mirror)
        cw.webhook_url = host.url
        yield cw, mirror, sent
        host.close()
        mirror.close(timeout=1)


def bot_turn(mirror: Mirror, text: str) -> str | None:
    """What a host bot does with each customer message."""
    if mirror.is_paused(PHONE):
        mirror.log_incoming(PHONE, text)  # still mirrored, the bot stays silent
        return None
    reply = f"bot: {text}"
    mirror.log_exchange(PHONE, text, reply)
    return reply


def test_customer_agent_takeover_silence_and_resolve(loop):
    cw, mirror, sent = loop
    assert bot_turn(mirror, "oi") == "bot: oi"
    assert mirror.flush()
    [conv] = cw.conversations()

    cw.agent_reply(conv["id"], "Olá, sou a Ana")                  # a human takes over
    assert eventually(lambda: mirror.is_paused(PHONE))
    assert eventually(lambda: len(sent) == 1)
    assert sent[0].text == "Olá, sou a Ana" and sent[0].agent_name == "Ana Agente"
    assert sent[0].contact.phone_number == "+5511987654321"
    assert mirror.flush()
    # the provider took it ("sent"); its receipt, through the host, says more
    assert mirror.message_status(PHONE, "wamid.1", "delivered")
    assert eventually(lambda: [m["status"] for m in cw.messages(conv["id"])
                               if m["content"] == "Olá, sou a Ana"] == ["delivered"])

    assert bot_turn(mirror, "quero falar do pedido") is None    # the bot is silent
    assert mirror.flush()
    cw.private_note(conv["id"], "cliente VIP")                   # never reaches the customer
    assert [m["content"] for m in cw.messages(conv["id"])][-2:] == [
        "quero falar do pedido", "cliente VIP"]

    cw.resolve(conv["id"])                                       # handed back
    assert eventually(lambda: not mirror.is_paused(PHONE))
    assert bot_turn(mirror, "obrigado") == "bot: obrigado"
    assert mirror.flush()
    assert cw.wait_for_webhooks()
    assert [m.text for m in sent] == ["Olá, sou a Ana"]          # notes and bot echoes: never
    contents = [(m["content"], m["sender"]["type"] if m["sender"] else None)
                for m in cw.messages(conv["id"])]
    assert contents[-2:] == [("obrigado", "contact"), ("bot: obrigado", "agent_bot")]
    assert all(entry.get("status") == 200 for entry in cw.webhook_log)


def test_relay_retries_then_reports_failure(loop):
    cw, mirror, sent = loop
    attempts = []

    def flaky(message: AgentMessage) -> str:
        attempts.append(message.chatwoot_message_id)
        raise ConnectionError("provider down")

    mirror.on_agent_message(flaky)
    mirror.log_incoming(PHONE, "oi")
    assert mirror.flush()
    [conv] = cw.conversations()
    reply = cw.agent_reply(conv["id"], "Olá")
    assert eventually(lambda: mirror.stats()["dead_letters"] == 1)
    assert len(attempts) == mirror.config.relay_max_attempts
    failed = [m for m in cw.messages(conv["id"]) if m["id"] == reply["id"]][0]
    assert failed["status"] == "failed"
    assert "provider down" in failed["content_attributes"]["external_error"]


def test_channel_refusal_is_reported_at_once(loop):
    cw, mirror, sent = loop

    def refuse(message: AgentMessage) -> str:
        raise RelayRejected("outside the 24-hour window")

    mirror.on_agent_message(refuse)
    mirror.log_incoming(PHONE, "oi")
    assert mirror.flush()
    [conv] = cw.conversations()
    reply = cw.agent_reply(conv["id"], "Olá")
    assert eventually(lambda: mirror.stats()["dead_letters"] == 1)
    failed = [m for m in cw.messages(conv["id"]) if m["id"] == reply["id"]][0]
    assert failed["status"] == "failed"
    assert failed["content_attributes"]["external_error"] == "outside the 24-hour window"


def test_a_webhook_delivered_twice_is_relayed_once(tmp_path):
    from conftest import contract
    from test_webhooks import signed

    mirror = Mirror(Config(url="http://127.0.0.1:9", inbox_identifier="t",
                           db_path=str(tmp_path / "m.db"), webhook_secret="whsec-inbox-SECRET"),
                    start=False)
    sent: list[AgentMessage] = []
    mirror.on_agent_message(lambda m: sent.append(m) or None)
    handler = mirror.webhook_handler()
    payload = contract("chatwoot/webhooks/message_created.json")
    handler.handle(signed(payload, delivery="a"))
    handler.handle(signed(payload, delivery="b"))  # Chatwoot re-sent, new delivery id
    assert mirror.stats()["queued"] == 1
    mirror.start()
    assert mirror.flush()
    assert [m.chatwoot_message_id for m in sent] == [payload["id"]]
    # no stored identity for this contact: the payload's phone number is used
    assert sent[0].contact.phone_number == "+5511987654321"
    mirror.close(timeout=0)


def test_templates_are_relayed_only_when_asked(tmp_path):
    from conftest import contract
    from test_webhooks import signed

    template = contract("chatwoot/webhooks/message_created_template.json")
    for option, expected in ((False, "ignored"), (True, "relayed")):
        mirror = Mirror(Config(url="http://127.0.0.1:9", inbox_identifier="t",
                               db_path=str(tmp_path / f"{option}.db"),
                               webhook_secret="whsec-inbox-SECRET", relay_templates=option),
                        start=False)
        mirror.on_agent_message(lambda m: None)
        result = mirror.webhook_handler().handle(signed(template)).body["result"]
        assert result == expected
        assert not mirror.is_paused("5511987654321")
        mirror.close(timeout=0)


def test_a_relay_queued_during_a_relay_run_is_not_held_back(tmp_path):
    """Regression: the run's claim was released under the contact's key instead of the
    relay queue's own key, so a relay queued mid-run waited for the claim to expire."""
    import time as clock

    from chatwoot_mirror.identity import identify
    from chatwoot_mirror.outbox import decode

    mirror = Mirror(Config(url="http://127.0.0.1:9", inbox_identifier="t",
                           db_path=str(tmp_path / "m.db")), start=False)
    contact = identify(PHONE)
    sent: list[str] = []

    def sender(message: AgentMessage) -> None:
        sent.append(message.text)
        if message.text == "one":  # the agent writes again while "one" is being sent
            mirror.relay(AgentMessage(contact=contact, text="two", chatwoot_message_id=2,
                                      conversation_id=1))

    mirror.on_agent_message(sender)
    mirror.relay(AgentMessage(contact=contact, text="one", chatwoot_message_id=1,
                              conversation_id=1))
    first, second = mirror.workers.owners[:2]
    rows = mirror.store.claim(first, 30, 20, clock.time())
    mirror.workers._deliver_run(first, rows[0].contact_key, [decode(r) for r in rows])
    rows = mirror.store.claim(second, 30, 20, clock.time())  # at once, not 30 s later
    assert [decode(r).content for r in rows] == ["two"]
    assert sent == ["one"]
    mirror.close(timeout=0)
