from __future__ import annotations

import hashlib
import hmac
import json
import logging

import pytest
import responses
from fake_chatwoot import ACCOUNT, BASE, BOT_TOKEN, INBOX, FakeChatwoot

import chatwoot_mirror
from chatwoot_mirror import Config, ConfigError, Mirror, log_to_chatwoot

PUBLIC = f"/public/api/v1/inboxes/{INBOX}"


def make_config(db_path: str, *, bot: bool = True, **extra) -> Config:
    kwargs = dict(url=BASE, inbox_identifier=INBOX, db_path=db_path, retry_base_seconds=0.02,
                  retry_max_seconds=0.1, max_requests_per_minute=0)
    if bot:
        kwargs.update(account_id=ACCOUNT, bot_token=BOT_TOKEN)
    kwargs.update(extra)
    return Config(**kwargs)


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def fake(rsps):
    return FakeChatwoot(rsps)


def bodies(rsps):
    out = []
    for call in rsps.calls:
        body = call.request.body
        out.append(json.loads(body) if body else None)
    return out


def test_first_exchange_creates_contact_and_conversation_then_posts_both(fake, rsps, db_path):
    with Mirror(make_config(db_path)) as mirror:
        assert mirror.log_exchange("+55 (11) 98765-4321", "Oi, quero saber do meu pedido",
                                   "Claro! Qual é o número do pedido?", sender_name="Maria Silva")
    assert fake.calls() == [
        ("POST", f"{PUBLIC}/contacts"),
        ("GET", f"{PUBLIC}/contacts/wa-5511987654321/conversations"),
        ("POST", f"{PUBLIC}/contacts/wa-5511987654321/conversations"),
        ("POST", f"/api/v1/accounts/{ACCOUNT}/conversations/128/messages"),
        ("POST", f"/api/v1/accounts/{ACCOUNT}/conversations/128/messages"),
    ]
    sent = bodies(rsps)
    assert sent[0] == {
        "source_id": "wa-5511987654321",
        "name": "Maria Silva",
        "phone_number": "+5511987654321",
        "identifier": "5511987654321",
    }
    assert "api_access_token" not in rsps.calls[0].request.headers
    assert sent[2] == {}
    # With a bot token, both directions carry our source_id and marker (exact retry check).
    customer, bot = sent[3], sent[4]
    assert customer["content"] == "Oi, quero saber do meu pedido"
    assert customer["message_type"] == "incoming" and customer["private"] is False
    assert bot["content"] == "Claro! Qual é o número do pedido?"
    assert bot["message_type"] == "outgoing" and bot["private"] is False
    for body in (customer, bot):
        assert body["source_id"].startswith("cwm:")
        assert body["content_attributes"] == {"chatwoot_mirror": {"key": body["source_id"][4:]}}
    assert customer["source_id"] != bot["source_id"]
    assert rsps.calls[3].request.headers["api_access_token"] == BOT_TOKEN
    assert rsps.calls[4].request.headers["api_access_token"] == BOT_TOKEN
    # what Chatwoot now holds: customer message incoming, bot reply outgoing
    assert [m["message_type"] for m in fake.messages] == [0, 1]


def test_steady_state_is_one_request_per_message(fake, db_path):
    with Mirror(make_config(db_path)) as mirror:
        mirror.log_exchange("5511987654321", "oi", "olá")
        assert mirror.flush()
        before = len(fake.calls())
        mirror.log_exchange("5511987654321@c.us", "tudo bem?", "sim!")
    assert len(fake.calls()) - before == 2


def test_conversation_is_remembered_across_restarts(fake, db_path):
    with Mirror(make_config(db_path)) as mirror:
        mirror.log_incoming("5511987654321", "oi")
    before = len(fake.calls())
    with Mirror(make_config(db_path)) as mirror:
        mirror.log_incoming("5511987654321", "de novo")
        mirror.log_incoming("5511987654321", "e mais uma")
    # one contact-scoped read confirms, once per process, that 128 is still this
    # contact's conversation before the Application API posts into it by id
    assert fake.calls()[before:] == [
        ("GET", f"{PUBLIC}/contacts/wa-5511987654321/conversations/128"),
        ("POST", f"/api/v1/accounts/{ACCOUNT}/conversations/128/messages"),
        ("POST", f"/api/v1/accounts/{ACCOUNT}/conversations/128/messages"),
    ]
    assert len(fake.conversations) == 1


def test_without_bot_token_a_restart_posts_without_a_check(fake, db_path):
    # the public API's posts are contact-scoped already: no ownership read needed
    with Mirror(make_config(db_path, bot=False)) as mirror:
        mirror.log_incoming("5511987654321", "oi")
    before = len(fake.calls())
    with Mirror(make_config(db_path, bot=False)) as mirror:
        mirror.log_incoming("5511987654321", "de novo")
    assert fake.calls()[before:] == [
        ("POST", f"{PUBLIC}/contacts/wa-5511987654321/conversations/128/messages"),
    ]


def test_without_bot_token_replies_are_prefixed_incoming_and_startup_warns(
    fake, rsps, db_path, caplog
):
    caplog.set_level(logging.WARNING, logger="chatwoot_mirror")
    with Mirror(make_config(db_path, bot=False)) as mirror:
        warnings = [r for r in caplog.records if "CHATWOOT_BOT_TOKEN" in r.getMessage()]
        assert len(warnings) == 1
        mirror.log_exchange("5511987654321", "oi", "olá, posso ajudar?")
    assert fake.calls()[-1] == (
        "POST", f"{PUBLIC}/contacts/wa-5511987654321/conversations/128/messages"
    )
    assert bodies(rsps)[-1] == {"content": "🤖 olá, posso ajudar?"}
    assert all(not c[1].startswith("/api/v1") for c in fake.calls())


def test_custom_prefix(fake, rsps, db_path):
    with Mirror(make_config(db_path, bot=False, bot_prefix="[bot] ")) as mirror:
        mirror.log_outgoing("5511987654321", "olá")
    assert bodies(rsps)[-1] == {"content": "[bot] olá"}


def test_picks_highest_open_conversation_never_list_order(fake, db_path):
    fake.contacts["wa-5511987654321"] = {"source_id": "wa-5511987654321", "id": 42}
    for cid, status in [(97, "resolved"), (130, "resolved"), (128, "open"), (101, "pending")]:
        fake.conversations[cid] = {"id": cid, "source_id": "wa-5511987654321", "status": status}
    with Mirror(make_config(db_path)) as mirror:
        mirror.log_incoming("5511987654321", "oi")
    assert fake.calls()[-1][1].endswith("/conversations/128/messages")
    assert len(fake.conversations) == 4


@pytest.mark.parametrize("policy,expected,created", [("reopen", 130, 0), ("new", 131, 1)])
def test_resolved_policy(fake, db_path, policy, expected, created):
    fake.next_conversation = 131
    fake.contacts["wa-5511987654321"] = {"source_id": "wa-5511987654321", "id": 42}
    for cid in (97, 130):
        fake.conversations[cid] = {"id": cid, "source_id": "wa-5511987654321",
                                   "status": "resolved"}
    with Mirror(make_config(db_path, resolved_policy=policy)) as mirror:
        mirror.log_incoming("5511987654321", "voltei")
    assert fake.calls()[-1][1].endswith(f"/conversations/{expected}/messages")
    assert len(fake.conversations) == 2 + created
    if policy == "reopen":
        assert fake.conversations[130]["status"] == "open"


def test_deleted_conversation_is_resolved_again_once(fake, db_path):
    with Mirror(make_config(db_path)) as mirror:
        mirror.log_incoming("5511987654321", "oi")
        assert mirror.flush()
        del fake.conversations[128]  # an admin deleted it in Chatwoot
        assert mirror.log_incoming("5511987654321", "ainda aí?")
        assert mirror.flush()
        assert mirror.store.get_contact("wa-5511987654321").conversation_id == 129
    assert fake.messages[-1]["conversation_id"] == 129


def test_deleted_contact_is_created_again(fake, db_path):
    with Mirror(make_config(db_path, bot=False)) as mirror:
        mirror.log_incoming("5511987654321", "oi")
        assert mirror.flush()
        fake.contacts.clear()
        fake.conversations.clear()
        assert mirror.log_outgoing("5511987654321", "olá")
    assert ("POST", f"{PUBLIC}/contacts") in fake.calls()[2:]
    assert fake.messages[-1]["conversation_id"] == 129


def test_hmac_identifier_hash(fake, rsps, db_path):
    with Mirror(make_config(db_path, hmac_token="inbox-hmac-SECRET")) as mirror:
        mirror.log_incoming("5511987654321", "oi")
    sent = bodies(rsps)[0]
    expected = hmac.new(b"inbox-hmac-SECRET", b"5511987654321", hashlib.sha256).hexdigest()
    assert sent["identifier_hash"] == expected


def test_chatwoot_500_is_retried_not_raised_and_counted(fake, db_path, caplog):
    caplog.set_level(logging.DEBUG, logger="chatwoot_mirror")
    error = {"status": 500, "error": "Internal Server Error"}
    fake.fail_next.append(("POST /contacts$", 500, error))
    fake.fail_next.append(("POST /conversations/\\d+/messages$", 500, error))
    with Mirror(make_config(db_path)) as mirror:
        assert mirror.log_incoming("5511987654321", "oi") is True
        assert mirror.flush(5)
        stats = mirror.stats()
    # the contact create is safe to repeat: tried again within the attempt; the message
    # post is not: its attempt fails, and the outbox retries it
    assert [call for call in fake.calls() if call[0] == "POST"].count(
        ("POST", f"/public/api/v1/inboxes/{INBOX}/contacts")) == 2
    assert stats["retried"] == 1 and stats["delivered"] == 1
    assert "HTTP 500" in stats["last_error"] and stats["last_error_at"] > 0
    assert "HTTP 500" in stats["chatwoot_last_error"]
    assert [m["content"] for m in fake.messages] == ["oi"]
    text = caplog.text
    assert INBOX not in text and BOT_TOKEN not in text


def test_secrets_never_reach_logs(fake, db_path, caplog):
    caplog.set_level(logging.DEBUG)
    with Mirror(make_config(db_path, hmac_token="HMAC-SECRET")) as mirror:
        mirror.log_exchange("5511987654321", "oi", "olá")
    assert "wa-5511987654321" in caplog.text  # contact ids are logged as fields
    for secret in (INBOX, BOT_TOKEN, "HMAC-SECRET", "qV8cN3wXhT1zLb6RkP2sYd9E"):
        assert secret not in caplog.text


def test_disabled_is_a_noop_returning_false(rsps, db_path, tmp_path, monkeypatch):
    """The null object: every public call answers "nothing done", touches no store and
    sends nothing to Chatwoot; the list of calls covers the whole public API."""
    import inspect

    from chatwoot_mirror.mirror import DisabledMirror
    from chatwoot_mirror.relay import AgentMessage

    monkeypatch.chdir(tmp_path)
    mirror = Mirror(Config(enabled=False))
    assert isinstance(mirror, DisabledMirror) and isinstance(mirror, Mirror)
    phone = "5511987654321"
    message = AgentMessage(contact=mirror.identify(phone), text="oi", chatwoot_message_id=1,
                           conversation_id=1)
    calls = {
        "log_exchange": ((phone, "oi", "olá"), False),
        "log_incoming": ((phone, "oi"), False),
        "log_outgoing": ((phone, "olá"), False),
        "handoff_reason": ((phone, "quero um atendente"), None),
        "notify_customer": ((phone, "olá"), False),
        "is_paused": ((phone,), False),
        "handoff": ((phone,), False),
        "human_replied": ((phone,), False),
        "resume": ((phone,), False),
        "relay": ((message,), False),
        "message_status": (("5511988887777", "wamid.1", "read"), False),
        "flush": ((), True),
        "dead_letters": ((), []),
        "retry_dead": ((), 0),
        "start": ((), None),
        "answer": ((phone,), "no_reply"),
        "stats": ((), {"delivered": 0, "retried": 0, "dead_lettered": 0, "not_queued": 0,
                       "last_error": None, "last_error_at": None}),
    }
    for name, (args, expected) in calls.items():
        assert getattr(mirror, name)(*args) == expected, name
    received = mirror.receive(phone, "oi", channel="a")
    assert (received.queued, received.duplicate, received.bot_should_answer) == (
        False, False, True)
    hook = lambda *a: None  # noqa: E731
    for name in ("on_handoff", "on_resume", "on_agent_message"):
        assert getattr(mirror, name)(hook) is hook
    assert mirror.on_media_download("uazapi", hook) is hook
    assert mirror.on_bot_turn("uazapi", hook) is hook
    assert mirror.connect() is mirror.channels
    for name in ("values", "webhook_handler"):
        with pytest.raises(ConfigError, match="CHATWOOT_ENABLED"):
            getattr(mirror, name)(*(("channel",) if name == "values" else ()))
    mirror.close()
    assert mirror.closed and mirror.agent_sender is None
    covered = set(calls) | {"receive", "on_handoff", "on_resume", "on_agent_message",
                            "on_media_download", "on_bot_turn", "connect", "values",
                            "webhook_handler",
                            "close", "identify", "from_env"}
    public = {name for name, _ in inspect.getmembers(Mirror, inspect.isfunction)
              if not name.startswith("_")} | {"from_env"}
    assert public <= covered, public - covered  # a new method needs its null answer here
    assert len(rsps.calls) == 0
    assert not list(tmp_path.iterdir())  # no store was created


def test_empty_bot_reply_is_skipped(fake, db_path):
    with Mirror(make_config(db_path)) as mirror:
        assert mirror.log_exchange("5511987654321", "oi", "")
    assert [m["content"] for m in fake.messages] == ["oi"]


def test_overlong_content_is_truncated_to_chatwoot_limit(fake, rsps, db_path):
    with Mirror(make_config(db_path)) as mirror:
        assert mirror.log_incoming("5511987654321", "a" * 200_000)
    assert len(bodies(rsps)[-1]["content"]) == 150_000


def test_log_to_chatwoot_uses_environment_and_same_signature(fake, rsps, db_path, monkeypatch):
    monkeypatch.setenv("CHATWOOT_URL", BASE)
    monkeypatch.setenv("CHATWOOT_INBOX_ID", INBOX)
    monkeypatch.setenv("CHATWOOT_MIRROR_DB", db_path)
    monkeypatch.chdir(db_path.rsplit("/", 1)[0])  # no stray .env from the working directory
    assert log_to_chatwoot("5511987654321", "oi", "olá") is True
    assert chatwoot_mirror.get_default_mirror().flush()
    assert bodies(rsps)[0]["name"] == "Usuario"
    assert [m["content"] for m in fake.messages] == ["oi", "🤖 olá"]
    chatwoot_mirror.get_default_mirror().close()


def test_log_to_chatwoot_with_bad_config_returns_false(rsps, monkeypatch, tmp_path, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHATWOOT_URL", "https://chat.example.com/public/api/v1")
    monkeypatch.setenv("CHATWOOT_INBOX_ID", INBOX)
    assert log_to_chatwoot("5511987654321", "oi", "olá") is False
    assert log_to_chatwoot("5511987654321", "oi", "olá") is False
    assert len(rsps.calls) == 0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "CHATWOOT_URL" in errors[0].getMessage()
    with pytest.raises(chatwoot_mirror.ConfigError):
        chatwoot_mirror.get_default_mirror()


def test_invalid_contact_returns_false(fake, db_path):
    with Mirror(make_config(db_path)) as mirror:
        assert mirror.log_incoming("", "oi") is False
        assert mirror.stats()["not_queued"] == 1
