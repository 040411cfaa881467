"""The mirror's public API that integrations use instead of reaching into its parts."""

from __future__ import annotations

import json

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


@responses.activate
def test_an_echo_reaching_another_host_is_still_recognised(tmp_path):
    """Two hosts share one store: Z-PRO delivers the echo of host A's message to host B,
    which must see it as our own (not the owner typing, which would pause the bot)."""
    from conftest import contract

    from chatwoot_mirror.integrations import ZproAdapter
    from chatwoot_mirror.integrations.base import ECHO, OWNER
    from chatwoot_mirror.integrations.inbound import connect

    base = "https://api.zpro.example.com"
    responses.post(f"{base}/v2/api/external/api-123", json={"message": "ok"})
    config = Config(url="https://chat.example.com", inbox_identifier="abc",
                    db_path=str(tmp_path / "shared.db"))
    with Mirror(config, start=False) as host_a, Mirror(config, start=False) as host_b:
        sender = ZproAdapter(base, "api-123", "jwt-token", webhook_secret="s")
        receiver = ZproAdapter(base, "api-123", "jwt-token", webhook_secret="s")
        connect(host_a, sender)
        connect(host_b, receiver)
        sender.send_text("5511988887777", "Seu pedido saiu para entrega")
        echo = contract("zpro/whaticket_saas_connection_webhook_message.json")
        echo.update(fromMe=True, mensagem="Seu pedido saiu para entrega")
        body = json.dumps(echo).encode()
        assert receiver.parse({}, body)[0].kind == ECHO
        assert receiver.parse({}, body)[0].kind == OWNER  # once: the next is a person
        assert sender.parse({}, body)[0].kind == OWNER  # and not again on host A
        # the store keeps a digest, not the customer's words
        rows = SQLiteStore(str(tmp_path / "shared.db"))._conn().execute(
            "SELECT key, value FROM kv WHERE scope = 'echo:zpro'").fetchall()
        assert all("pedido" not in key for key, _ in rows)
