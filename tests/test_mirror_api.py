"""The mirror's public API that integrations use instead of reaching into its parts."""

from __future__ import annotations

import pytest

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
