"""What the adapters rest on: the store's key-value scope, queued file references, start-up
configuration, Mirror.receive, and parsers that never raise on mutated real payloads."""

from __future__ import annotations

import json
import random

import pytest
from conftest import CONTRACTS, contract

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.client import Attachment
from chatwoot_mirror.delivery import INCOMING, MirroredMessage
from chatwoot_mirror.errors import ConfigError
from chatwoot_mirror.identity import identify
from chatwoot_mirror.integrations import Dialog360Adapter, TypebotBot, UazapiAdapter, ZproAdapter
from chatwoot_mirror.media import MediaRef, MediaTooLarge, read_limited
from chatwoot_mirror.outbox import decode, encode
from chatwoot_mirror.store import SQLiteStore
from chatwoot_mirror.testing import FakeChatwoot


def test_key_value_scope(db_path):
    store = SQLiteStore(db_path)
    assert store.get_value("typebot:a", "5511", 0) is None
    store.set_value("typebot:a", "5511", "one", expires_at=100.0)
    assert store.get_value("typebot:a", "5511", 99.0) == "one"
    assert store.get_value("typebot:a", "5511", 100.0) is None  # expired
    assert store.get_value("typebot:b", "5511", 0) is None      # scopes are apart
    store.set_value("typebot:a", "5511", "two")                 # replaces value and expiry
    assert store.get_value("typebot:a", "5511", 1e12) == "two"
    assert not store.delete_value("typebot:a", "5511", expected="one")  # a stale reader
    assert store.delete_value("typebot:a", "5511", expected="two")
    store.set_value("x", "k", "v", expires_at=10.0)
    store.prune_seen(before=20.0)
    store.set_value("x", "k2", "v")
    assert SQLiteStore(db_path).get_value("x", "k2", 0) == "v"  # committed for others
    assert store.get_value("x", "k", 0) is None                 # pruned after expiry


def test_file_references_survive_the_outbox():
    ref = MediaRef("uazapi", "AC3D", "image", "image/jpeg", "a.jpg", 1234)
    message = MirroredMessage(identity=identify("5511988887777"), direction=INCOMING,
                              content="foto", attachments=(ref, Attachment(b"\x00", "b.bin")))
    back = decode(encode(message))
    assert back.attachments == (ref, Attachment(b"\x00", "b.bin"))


def test_read_limited_stops_early():
    chunks = iter([b"a" * 10, b"b" * 10, b"c" * 10])
    with pytest.raises(MediaTooLarge):
        read_limited(chunks, 15)
    assert next(chunks) == b"c" * 10  # the rest was never read
    assert read_limited([b"ab", b"c"], 3) == b"abc"
    with pytest.raises(MediaTooLarge):
        read_limited([], 10, size=11)


def test_media_limit_is_validated():
    with pytest.raises(ConfigError, match="CHATWOOT_MEDIA_MAX_MB"):
        Config.from_env({"CHATWOOT_URL": "https://c.example.com", "CHATWOOT_INBOX_ID": "abc",
                         "CHATWOOT_MEDIA_MAX_MB": "-1"}, dotenv=False)
    config = Config.from_env({"CHATWOOT_URL": "https://c.example.com",
                              "CHATWOOT_INBOX_ID": "abc", "CHATWOOT_MEDIA_MAX_MB": "5"},
                             dotenv=False)
    assert config.media_max_mb == 5.0


@pytest.mark.parametrize(("factory", "environ", "variable"), [
    (Dialog360Adapter.from_env, {}, "D360_API_KEY"),
    (Dialog360Adapter.from_env, {"D360_API_KEY": "k", "D360_WEBHOOK_INSECURE": "sim"},
     "D360_WEBHOOK_INSECURE"),
    (UazapiAdapter.from_env, {"UAZAPI_URL": "https://a.uazapi.com"}, "UAZAPI_TOKEN"),
    (ZproAdapter.from_env, {"ZPRO_URL": "https://z", "ZPRO_TOKEN": "t"}, "ZPRO_API_ID"),
    (TypebotBot.from_env, {"TYPEBOT_URL": "https://typebot.io"}, "TYPEBOT_PUBLIC_ID"),
])
def test_adapters_from_env_name_the_missing_variable(factory, environ, variable):
    with pytest.raises(ConfigError) as error:
        factory(environ)
    assert error.value.variable == variable


def test_adapters_from_env():
    d360 = Dialog360Adapter.from_env({"D360_API_KEY": "k", "D360_WEBHOOK_SECRET": "s",
                                      "D360_BASE_URL": "https://waba.360dialog.io"})
    assert d360.on_premise and d360.verifies
    uaz = UazapiAdapter.from_env({"UAZAPI_URL": "https://a.uazapi.com/", "UAZAPI_TOKEN": "t",
                                  "UAZAPI_INCLUDE_GROUPS": "true"})
    assert uaz.base_url == "https://a.uazapi.com" and uaz.include_groups
    bot = TypebotBot.from_env({"TYPEBOT_URL": "https://typebot.io", "TYPEBOT_PUBLIC_ID": "f"})
    assert bot.api_url == "https://typebot.io/api"


def test_receive_reports_duplicates_and_pause(tmp_path):
    with FakeChatwoot() as cw:
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        db_path=str(tmp_path / "m.db"), max_requests_per_minute=0)
        with Mirror(config) as mirror:
            first = mirror.receive("5511988887777", "oi", message_id="wamid.1")
            assert (first.queued, first.duplicate, first.paused) == (True, False, False)
            assert first.bot_should_answer
            again = mirror.receive("5511988887777", "oi", message_id="wamid.1")
            assert again.duplicate and not again.bot_should_answer
            asks = mirror.receive("5511988887777", "quero um atendente", message_id="wamid.2")
            assert asks.paused and not asks.bot_should_answer  # the keyword trigger ran
        disabled = Mirror(Config(enabled=False)).receive("1", "oi")
        assert disabled.bot_should_answer and not disabled.queued


def _mutations(value, rng: random.Random, depth: int = 0):
    """The payload with one node replaced by something of another type."""
    if isinstance(value, dict) and value and depth < 8:
        key = rng.choice(list(value))
        return {**value, key: _mutations(value[key], rng, depth + 1)}
    if isinstance(value, list) and value and depth < 8:
        i = rng.randrange(len(value))
        return value[:i] + [_mutations(value[i], rng, depth + 1)] + value[i + 1:]
    return rng.choice([None, 0, -1, 1.5, "", "x", [], {}, [None], {"a": None}, True])


@pytest.mark.parametrize("provider", ["dialog360", "uazapi", "zpro"])
def test_parsers_never_raise_on_mutated_real_payloads(provider):
    adapter = {"dialog360": Dialog360Adapter("k", insecure=True),
               "uazapi": UazapiAdapter("https://u", "t"),
               "zpro": ZproAdapter("https://z", "a", "t", insecure=True)}[provider]
    rng = random.Random(20261122)
    payloads = [contract(f"{provider}/{p.name}") for p in sorted((CONTRACTS / provider).glob(
        "*.json")) if "openapi" not in p.name]
    for _ in range(400):
        body = rng.choice(payloads)
        for _ in range(rng.randint(1, 3)):
            body = _mutations(body, rng)
        for event in adapter.parse({}, json.dumps(body).encode()):
            assert isinstance(event.contact, str) and isinstance(event.text, str)
