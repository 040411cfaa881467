"""The provider never waits for the bot (issue #19): a verified provider webhook is answered
once its events are queued; the delivery workers run the bot, in order per contact and in
parallel across contacts, once per provider message, also after a crash, and while
Chatwoot is down. ``mode="sync"`` keeps the bot inside the request."""

from __future__ import annotations

import json
import threading

import pytest
from conftest import eventually
from test_adapters_e2e import MARIA, UAZ_TOKEN, uazapi

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.integrations import InboundHandler
from chatwoot_mirror.integrations.base import InboundEvent
from chatwoot_mirror.testing import FakeChatwoot
from chatwoot_mirror.webhooks import WebhookRequest


def make_config(cw: FakeChatwoot, db: str) -> Config:
    return Config(url=cw.url, inbox_identifier=cw.inbox_identifier, account_id=cw.account_id,
                  bot_token=cw.bot_token, db_path=db, max_requests_per_minute=0,
                  retry_base_seconds=0.02, retry_max_seconds=0.1)


@pytest.fixture
def cw():
    with FakeChatwoot() as chatwoot:
        yield chatwoot


def webhook(case: dict, *, message_id: str | None = None, contact: str | None = None,
            text: str | None = None) -> WebhookRequest:
    body = json.loads(json.dumps(case["text"]))
    if message_id:
        body["message"]["messageid"] = message_id
    if text:
        body["message"]["text"] = body["message"]["content"] = text
    raw = json.dumps(body)
    if contact:  # another person: another phone, and another LID
        raw = raw.replace(MARIA, contact).replace("100000000000001", "100000000000002")
    return WebhookRequest({}, raw.encode(), {})


class SlowBot:
    """A bot that takes its time (an LLM): each call waits until released."""

    def __init__(self) -> None:
        self.calls: list[InboundEvent] = []
        self.threads: list[str] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, event: InboundEvent) -> str:
        with self.lock:
            self.calls.append(event)
            self.threads.append(threading.current_thread().name)
        assert self.release.wait(10)
        return f"resposta a {event.text}"


def test_the_provider_is_answered_before_the_bot_has_answered(cw, tmp_path):
    adapter, provider, case = uazapi()
    bot = SlowBot()
    with Mirror(make_config(cw, str(tmp_path / "m.db"))) as mirror:
        handler = InboundHandler(mirror, adapter, bot)
        answer = handler.handle(webhook(case))
        assert (answer.status, answer.body["events"]) == (200, ["queued"])
        assert eventually(lambda: len(bot.calls) == 1)  # running, and the provider has its 200
        assert bot.threads[0].startswith("chatwoot-mirror-")  # a delivery worker, not ours
        assert provider.sent("POST", "/send/text") == []
        bot.release.set()
        assert eventually(lambda: len(provider.sent("POST", "/send/text")) == 1)
        assert provider.sent("POST", "/send/text")[0]["text"].startswith("resposta a ")
        assert mirror.flush()
        [conv] = cw.conversations()
        shown = [(m["content"], (m["sender"] or {}).get("type"))
                 for m in cw.messages(conv["id"])]
        assert shown[0][1] == "contact" and shown[1] == (
            provider.sent("POST", "/send/text")[0]["text"], "agent_bot")


def test_a_redelivered_webhook_calls_the_bot_once(cw, tmp_path):
    adapter, provider, case = uazapi()
    bot = SlowBot()
    with Mirror(make_config(cw, str(tmp_path / "m.db"))) as mirror:
        handler = InboundHandler(mirror, adapter, bot)
        outcomes = [handler.handle(webhook(case)).body["events"] for _ in range(3)]
        assert outcomes == [["queued"], ["duplicate"], ["duplicate"]]
        bot.release.set()
        assert eventually(lambda: len(provider.sent("POST", "/send/text")) == 1)
        assert handler.handle(webhook(case)).body["events"] == ["duplicate"]  # after, too
        assert mirror.flush()
    assert len(bot.calls) == 1


def test_turns_run_in_order_per_contact_and_in_parallel_across_contacts(cw, tmp_path):
    adapter, provider, case = uazapi()
    order: list[str] = []
    other_started = threading.Event()

    def bot(event: InboundEvent) -> str:
        order.append(f"start {event.text}")
        if event.text == "a1":
            # the other contact's turn runs meanwhile, or this waits in vain
            assert other_started.wait(10)
        if event.text == "b1":
            other_started.set()
        order.append(f"end {event.text}")
        return "ok " + event.text

    with Mirror(make_config(cw, str(tmp_path / "m.db"))) as mirror:
        handler = InboundHandler(mirror, adapter, bot)
        for message_id, contact, text in (("M1", None, "a1"), ("M2", None, "a2"),
                                          ("M3", "5511977776666", "b1")):
            assert handler.handle(webhook(case, message_id=message_id, contact=contact,
                                          text=text)).body["events"] == ["queued"]
        assert eventually(lambda: len(provider.sent("POST", "/send/text")) == 3)
    assert order.index("end a1") < order.index("start a2")  # one contact: in order
    assert order.index("start b1") < order.index("end a1")  # two contacts: in parallel


def test_a_turn_queued_before_a_crash_is_answered_once_when_the_host_is_back(cw, tmp_path):
    adapter, provider, case = uazapi()
    db = str(tmp_path / "m.db")
    never = SlowBot()
    crashed = Mirror(make_config(cw, db), start=False)  # no workers: killed before the bot ran
    assert InboundHandler(crashed, adapter, never).handle(webhook(case)).body["events"] == [
        "queued"]
    crashed.workers.stop()
    crashed.store.close()
    assert never.calls == []

    adapter, provider, case = uazapi()
    calls: list[InboundEvent] = []
    with Mirror(make_config(cw, db)) as mirror:
        InboundHandler(mirror, adapter, lambda e: calls.append(e) or "voltei")
        assert eventually(lambda: len(provider.sent("POST", "/send/text")) == 1)
        assert mirror.flush()
    assert [(e.contact, e.text) for e in calls] == [
        (f"{MARIA}@s.whatsapp.net", "Oi, vocês entregam no sábado?")]


def test_the_bot_answers_while_chatwoot_is_down(cw, tmp_path):
    adapter, provider, case = uazapi()
    with Mirror(make_config(cw, str(tmp_path / "m.db"))) as mirror:
        handler = InboundHandler(mirror, adapter, lambda e: "estamos aqui")
        cw.faults.outage = True
        assert handler.handle(webhook(case)).body["events"] == ["queued"]
        assert eventually(lambda: [b["text"] for b in provider.sent("POST", "/send/text")]
                          == ["estamos aqui"])
        assert mirror.stats()["queued"] >= 2  # both mirrored messages wait for Chatwoot
        cw.faults.outage = False
        assert mirror.flush(10)
    [conv] = cw.conversations()
    assert [m["content"] for m in cw.messages(conv["id"])][-1] == "estamos aqui"


def test_sync_mode_runs_the_bot_inside_the_request(cw, tmp_path):
    adapter, provider, case = uazapi()
    with Mirror(make_config(cw, str(tmp_path / "m.db"))) as mirror:
        handler = InboundHandler(mirror, adapter, lambda e: "na hora", mode="sync")
        assert handler.handle(webhook(case)).body["events"] == ["answered"]
        # the bot ran inside the request; its reply goes out through the relay queue
        assert eventually(lambda: [b["text"] for b in provider.sent("POST", "/send/text")]
                          == ["na hora"])
    with pytest.raises(Exception, match="mode must be"):
        InboundHandler(mirror, adapter, lambda e: None, mode="later")


def test_a_keyword_hands_over_without_a_bot_turn(cw, tmp_path):
    adapter, provider, case = uazapi()
    calls: list[InboundEvent] = []
    with Mirror(make_config(cw, str(tmp_path / "m.db"))) as mirror:
        handler = InboundHandler(mirror, adapter, lambda e: calls.append(e) or "não")
        answer = handler.handle(webhook(case, text="quero falar com um atendente"))
        assert answer.body["events"] == ["paused"]
        assert mirror.flush()
    assert calls == []
    assert UAZ_TOKEN  # the adapter above verified the token the fixture carries
