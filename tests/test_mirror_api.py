"""The mirror's public API that integrations use instead of reaching into its parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from chatwoot_mirror import Config, ConfigError, Mirror
from chatwoot_mirror.store import SQLiteStore


def test_values_are_kept_in_the_store_under_their_scope(tmp_path):
    config = Config(url="https://chat.example.com", inbox_identifier="abc",
                    db_path=str(tmp_path / "m.db"), language="es")
    with Mirror(config, start=False) as mirror:
        channels = mirror.values("channel")
        channels.set("wa-1", "uazapi")
        assert channels.get("wa-1") == "uazapi"
        assert mirror.values("other").get("wa-1") is None
        mirror.values("typebot").set("wa-1", "session", ttl=-1)  # already expired
        assert mirror.values("typebot").get("wa-1") is None
        assert not channels.delete("wa-1", expected="dialog360")
        assert channels.get("wa-1") == "uazapi"
        assert mirror.texts.from_phone == "[enviado desde el teléfono] "
        assert mirror.agent_sender is None
        sender = mirror.on_agent_message(lambda message: "id")
        assert mirror.agent_sender is sender
    # another process sharing the store sees the same value
    assert SQLiteStore(str(tmp_path / "m.db")).get_value("channel", "wa-1", 0) == "uazapi"


def test_a_disabled_mirror_has_no_state_to_keep():
    mirror = Mirror(Config(enabled=False))
    with pytest.raises(ConfigError, match="CHATWOOT_ENABLED"):
        mirror.values("channel")
    assert mirror.agent_sender is None


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
@responses.activate
def test_an_echo_reaching_another_host_is_still_recognised(tmp_path, request, backend):
    """Two hosts share one store (a SQLite file, or Redis with a connection each): Z-PRO
    delivers the echo of host A's message to host B, which must see it as our own (not
    the owner typing, which would pause the bot)."""
    from conftest import contract

    from chatwoot_mirror.integrations import ZproAdapter
    from chatwoot_mirror.integrations.base import ECHO, OWNER

    store = (f"sqlite:///{tmp_path}/shared.db" if backend == "sqlite"
             else request.getfixturevalue("redis_url"))
    base = "https://api.zpro.example.com"
    responses.post(f"{base}/v2/api/external/api-123", json={"message": "ok"})
    config = Config(url="https://chat.example.com", inbox_identifier="abc", store_url=store)
    with Mirror(config, start=False) as host_a, Mirror(config, start=False) as host_b:
        sender = ZproAdapter(base, "api-123", "jwt-token", webhook_secret="s")
        receiver = ZproAdapter(base, "api-123", "jwt-token", webhook_secret="s")
        host_a.connect(sender)
        host_b.connect(receiver)
        sender.send_text("5511988887777", "Seu pedido saiu para entrega")
        # the store keeps a digest of the send, not the customer's words (read before the
        # echo arrives: recognising it consumes the record)
        if backend == "sqlite":
            keys = [key for key, in SQLiteStore(str(tmp_path / "shared.db"))._conn().execute(
                "SELECT key FROM kv WHERE scope = 'echo:zpro'")]
        else:
            import redis

            client = redis.Redis.from_url(store.split("?")[0], decode_responses=True)
            redis_store = host_a.store.primary  # behind the local spill
            keys = list(client.scan_iter(match=redis_store.prefix + "kv:echo:zpro*"))
            client.close()
        assert keys and all("pedido" not in key for key in keys)
        echo = contract("zpro/whaticket_saas_connection_webhook_message.json")
        echo.update(fromMe=True, mensagem="Seu pedido saiu para entrega")
        body = json.dumps(echo).encode()
        assert receiver.parse({}, body)[0].kind == ECHO
        assert receiver.parse({}, body)[0].kind == OWNER  # once: the next is a person
        assert sender.parse({}, body)[0].kind == OWNER  # and not again on host A


def test_a_memory_store_mirror_runs_end_to_end_for_users_unit_tests():
    """CHATWOOT_MIRROR_STORE=memory:// needs no file: the emulator gets the exchange, and a
    handoff and its Chatwoot work run through the same rules as with SQLite."""
    from conftest import emulator_config

    from chatwoot_mirror.store import MemoryStore
    from chatwoot_mirror.testing import FakeChatwoot

    with FakeChatwoot() as cw:
        config = emulator_config(cw, "unused.db", store_url="memory://")
        with Mirror(config) as mirror:
            assert isinstance(mirror.store, MemoryStore)
            assert mirror.log_exchange("5511987654321", "oi", "Olá! Como posso ajudar?")
            assert mirror.handoff("5511987654321", "user_request")
            assert mirror.flush(10)
            assert mirror.is_paused("5511987654321")
        assert [m["content"] for m in cw.messages() if not m.get("private")][:2] == [
            "oi", "Olá! Como posso ajudar?"]
        assert any(m.get("private") for m in cw.messages())  # the handoff's note
        assert cw.conversations()[0]["status"] == "open"
    assert not Path("unused.db").exists()


def test_a_wrong_store_url_fails_at_start_up_naming_the_variable():
    with pytest.raises(ConfigError) as info:
        Config.from_env({"CHATWOOT_URL": "https://x.example", "CHATWOOT_INBOX_ID": "tok",
                         "CHATWOOT_MIRROR_STORE": "sqlite:/chatwoot.db"}, dotenv=False)
    assert info.value.variable == "CHATWOOT_MIRROR_STORE"


class _Recorder:
    """A channel adapter that records what it was asked to send."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[str] = []

    def relay(self, message):
        self.sent.append(message.text)
        return f"{self.name}-{len(self.sent)}"

    def download(self, media, max_bytes):
        raise NotImplementedError

    def attach(self, values, outbound):
        pass

    def secrets(self):
        return []


def test_an_agent_reply_goes_out_through_the_channel_the_contact_last_used_on_any_host(
        tmp_path):
    """Two hosts share one store and both speak WhatsApp through two providers. The
    contact writes through 'a' on host 1, through 'b' on host 2, then through 'a' on host 1
    again: an agent's reply handled by host 2 must leave through 'a'. A per-host cache of
    the route sent it through 'b', which the contact had left."""
    from chatwoot_mirror.relay import AgentMessage

    config = Config(url="https://chat.example.com", inbox_identifier="abc",
                    db_path=str(tmp_path / "shared.db"))
    host1, host2 = Mirror(config, start=False), Mirror(config, start=False)
    try:
        one = {name: _Recorder(name) for name in "ab"}
        two = {name: _Recorder(name) for name in "ab"}
        host1.connect(*one.values())
        host2.connect(*two.values())
        phone = "5511988887777"
        host1.receive(phone, "oi", message_id="m1", channel="a")
        host2.receive(phone, "oi de novo", message_id="m2", channel="b")
        host1.receive(phone, "e agora", message_id="m3", channel="a")
        reply = AgentMessage(contact=host2.identify(phone), text="Olá, sou a Ana",
                             chatwoot_message_id=9, conversation_id=1)
        assert host2.agent_sender is not None
        assert host2.agent_sender(reply) == "a-1"
        assert two["a"].sent == ["Olá, sou a Ana"] and two["b"].sent == []
    finally:
        host1.close(timeout=0)  # nothing to wait for: no worker delivers here
        host2.close(timeout=0)


def test_answer_sends_directly_when_the_queue_cannot_take_the_reply(tmp_path):
    """The bot's answer reaches the customer even when the store refuses writes."""
    config = Config(url="https://chat.example.com", inbox_identifier="abc",
                    db_path=str(tmp_path / "m.db"))
    mirror = Mirror(config, start=False)
    channel = _Recorder("a")
    mirror.connect(channel)

    def broken(rows):
        raise RuntimeError("disk full")

    mirror.store.enqueue = broken  # type: ignore[method-assign]
    assert mirror.answer("5511988887777", ["Seu pedido saiu"], channel="a") == "answered"
    assert channel.sent == ["Seu pedido saiu"]
    mirror.close(timeout=0)


def test_a_disabled_mirror_still_sends_the_bots_answer():
    mirror = Mirror(Config(enabled=False))
    channel = _Recorder("a")
    mirror.connect(channel)
    assert mirror.receive("5511988887777", "oi", channel="a").bot_should_answer
    assert mirror.answer("5511988887777", ["Olá!"], handoff="sales", channel="a") == "handed_off"
    assert channel.sent == ["Olá!"]
    assert mirror.answer("5511988887777", failed=True) == "handed_off"
