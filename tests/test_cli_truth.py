"""The tools tell the truth: doctor refuses a wrong bot token or account, reports every
problem, warns about what a missing bot token costs, reads dead letters, the outbox's age
and the last Chatwoot health from the store without creating one; flush fails when
messages were dead-lettered."""

from __future__ import annotations

import io
import json
import time

import pytest
from test_cli import PUBLIC_HOOK, env_for, problems

from chatwoot_mirror import Config, Mirror, cli, doctor
from chatwoot_mirror.store import OutboxRow, SQLiteStore
from chatwoot_mirror.testing import FakeChatwoot


@pytest.fixture
def healthy():
    with FakeChatwoot(webhook_secret="s3cret", lock_to_single_conversation=True,
                      webhook_url=PUBLIC_HOOK) as cw:
        yield cw


def checks(environ: dict[str, str]) -> dict[str, doctor.Check]:
    return {c.name: c for c in doctor.run(environ, dotenv=False)}


def run_cli(monkeypatch, tmp_path, environ: dict[str, str], *args: str) -> tuple[int, str]:
    for name in [n for n in list(__import__("os").environ) if n.startswith("CHATWOOT_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    return cli.main(list(args), out), out.getvalue()


def test_a_wrong_bot_token_is_a_problem_with_its_fix(healthy, tmp_path, monkeypatch):
    environ = env_for(healthy, tmp_path, CHATWOOT_BOT_TOKEN="not-the-token")
    found = problems(environ)
    assert set(found) == {"bot token"}
    assert "refused CHATWOOT_BOT_TOKEN" in found["bot token"].detail
    assert "Settings > Bots" in found["bot token"].fix
    code, text = run_cli(monkeypatch, tmp_path, environ, "doctor")
    assert code == 1 and "PROBLEM bot token" in text and "everything looks right" not in text
    assert "not-the-token" not in text


def test_a_wrong_account_is_a_problem_with_its_fix(healthy, tmp_path):
    found = problems(env_for(healthy, tmp_path, CHATWOOT_ACCOUNT_ID="2"))
    assert "account 2" in found["bot token"].detail
    assert "number after /accounts/" in found["bot token"].fix


def test_a_right_bot_token_is_said_so(healthy, tmp_path):
    assert checks(env_for(healthy, tmp_path))["bot token"].detail == "accepted for account 1"


def test_a_missing_bot_token_is_a_warning_that_says_what_is_lost(healthy, tmp_path,
                                                                  monkeypatch):
    environ = env_for(healthy, tmp_path)
    for name in ("CHATWOOT_BOT_TOKEN", "CHATWOOT_API_TOKEN", "CHATWOOT_ACCOUNT_ID"):
        environ.pop(name)
    check = checks(environ)["bot token"]
    assert check.ok and check.warning
    assert "customer messages" in check.detail and "handoff" in check.detail
    code, text = run_cli(monkeypatch, tmp_path, environ, "doctor")
    assert code == 0 and "warning bot token" in text and "it will work" in text


def test_every_problem_is_reported_not_only_the_first(healthy, tmp_path):
    db = tmp_path / "m.db"
    store = SQLiteStore(str(db))
    old = time.time() - 3600
    store.enqueue([OutboxRow("k1", "wa-1", "{}", created_at=old),
                   OutboxRow("k2", "wa-2", "{}", created_at=old)])
    [row] = store.claim("me", 30, 1, time.time())
    store.dead_letter(row.key, "me", "create_message (HTTP 422): Content is too long")
    store.close()
    found = problems(env_for(healthy, tmp_path, CHATWOOT_INBOX_ID="NoSuchInbox",
                             CHATWOOT_BOT_TOKEN="wrong"))
    assert {"inbox", "bot token", "dead letters", "outbox"} <= set(found)
    assert "Content is too long" in found["dead letters"].detail
    assert "retry-dead" in found["dead letters"].fix
    assert "the oldest for 60 min" in found["outbox"].detail


def test_doctor_shows_the_chatwoot_health_the_mirror_last_saw(healthy, tmp_path):
    environ = env_for(healthy, tmp_path)
    with Mirror(Config.from_env(environ, dotenv=False)) as mirror:
        assert mirror.log_incoming("5511987654321", "oi") and mirror.flush()
    seen = checks(environ)["last seen"]
    assert seen.ok and "Chatwoot accepted a message at" in seen.detail
    healthy.faults.outage = True
    with Mirror(Config.from_env({**environ, "CHATWOOT_RETRY_BASE_SECONDS": "5"},
                                dotenv=False)) as mirror:
        assert mirror.log_incoming("5511987654321", "de novo")
        assert not mirror.flush(timeout=1)
    seen = checks(environ)["last seen"]
    assert seen.warning and "Chatwoot failed at" in seen.detail and "503" in seen.detail


def test_doctor_and_status_create_no_store(healthy, tmp_path, monkeypatch):
    db = tmp_path / "not-yet" / "m.db"
    environ = env_for(healthy, tmp_path, CHATWOOT_MIRROR_DB=str(db))
    store = checks(environ)["store"]
    assert store.ok and "created with the first message" in store.detail
    code, text = run_cli(monkeypatch, tmp_path, environ, "status")
    assert code == 0 and "nothing queued" in text
    code, text = run_cli(monkeypatch, tmp_path, environ, "status", "--json")
    assert code == 0 and json.loads(text)["store"] is None
    assert not db.exists() and not db.parent.exists()


def test_flush_says_when_messages_were_dead_lettered(tmp_path, monkeypatch):
    with FakeChatwoot() as cw:
        environ = {**cw.env(), "CHATWOOT_MIRROR_DB": str(tmp_path / "m.db")}
        with Mirror(Config.from_env(environ, dotenv=False), start=False) as mirror:
            mirror.log_incoming("5511988887777", "oi")
            mirror.store.close()
        cw.emulator.agents.clear()  # irrelevant; the refusal below is what matters
        cw.faults.error_rate = 0.0
        # Chatwoot refuses for good: a 422 on every message post
        original = cw.emulator._create_message

        def refuse(*args, **kwargs):
            from chatwoot_mirror.testing.emulator import ApiError
            raise ApiError(422, {"message": "Content is invalid", "attributes": ["content"]})

        cw.emulator._create_message = refuse
        try:
            code, text = run_cli(monkeypatch, tmp_path, environ, "flush", "--timeout", "20")
        finally:
            cw.emulator._create_message = original
        assert code == 1
        assert "refused some messages for good" in text and "1 dead letters" in text
        assert "delivered everything" not in text


@pytest.mark.parametrize("extra,fix", [
    ({"CHATWOOT_BOT_TOKN": "x"}, "rename it to CHATWOOT_BOT_TOKEN"),
    ({"CHATWOOT_FOO_BAR_BAZ": "x"}, "remove it or fix its name"),
])
def test_unknown_variables_get_the_right_advice(healthy, tmp_path, extra, fix):
    found = checks(env_for(healthy, tmp_path, **extra))
    [name] = extra
    assert found[name].warning and found[name].fix == fix


def test_a_stray_account_id_is_told_to_go(tmp_path):
    found = problems({"CHATWOOT_URL": "https://chat.example.com", "CHATWOOT_INBOX_ID": "abc",
                      "CHATWOOT_ACCOUNT_ID": "1"})
    assert found["configuration"].fix.startswith("remove CHATWOOT_ACCOUNT_ID")
    found = problems({"CHATWOOT_URL": "https://chat.example.com"})
    assert found["configuration"].fix.startswith("set CHATWOOT_INBOX_ID")


def test_status_shows_chatwoots_health_since_when_and_the_last_error_with_its_time(
        healthy, tmp_path, monkeypatch):
    """After an outage and recovery, status no longer shows the old error as if it were
    current: it says how Chatwoot is now, since when, and when the last error was."""
    environ = env_for(healthy, tmp_path)
    healthy.faults.outage = True
    with Mirror(Config.from_env({**environ, "CHATWOOT_RETRY_BASE_SECONDS": "0.05",
                                 "CHATWOOT_RETRY_MAX_SECONDS": "0.2"},
                                dotenv=False)) as mirror:
        assert mirror.log_incoming("5511987654321", "oi")
        assert not mirror.flush(timeout=1)
        code, text = run_cli(monkeypatch, tmp_path, environ, "status", "--json")
        seen = json.loads(text)["chatwoot"]
        assert seen["health"] == "down" and "503" in seen["last_error"]
        healthy.faults.outage = False
        assert mirror.flush(10)
        stats = mirror.stats()
        assert stats["chatwoot_health"] == "degraded"  # the failures are still recent
        assert stats["chatwoot_last_error_at"] < stats["chatwoot_health_since"]
        assert mirror.log_incoming("5511987654321", "de novo") and mirror.flush(10)
    code, text = run_cli(monkeypatch, tmp_path, environ, "status")
    assert code == 0
    line = next(line for line in text.splitlines() if line.startswith("chatwoot:"))
    assert line.startswith("chatwoot: degraded since ") and "; last error at " in line
    assert "503" in line


def test_doctor_says_whether_the_account_keeps_conversations_pending_on_bot_errors(
        healthy, tmp_path):
    environ = env_for(healthy, tmp_path)
    found = checks(environ)["bot errors"]
    assert found.ok and "does not keep conversations pending" in found.detail
    assert "puts them back to pending" in found.detail
    found = checks({**environ, "CHATWOOT_BOT_ERROR_POLICY": "humans"})["bot errors"]
    assert "leaves them to agents" in found.detail
    healthy.emulator.keep_pending_on_bot_failure = True
    found = checks(environ)["bot errors"]
    assert "keeps conversations pending" in found.detail
    account = [r for r in healthy.requests if r[:2] == ("GET", "/api/v1/accounts/1")]
    assert account and all(status == 200 for _, _, status in account)


def test_an_unknown_account_is_told_from_a_missing_conversation_with_the_user_token(
        healthy, tmp_path):
    """Chatwoot answers an account that does not exist with 404, as it answers the
    conversation doctor probes for (ensure_current_account_helper.rb): the user token
    tells them apart; without it doctor says it cannot."""
    environ = env_for(healthy, tmp_path, CHATWOOT_ACCOUNT_ID="2")
    found = checks(environ)["bot token"]
    assert not found.ok and "account 2 does not exist" in found.detail
    environ.pop("CHATWOOT_API_TOKEN")
    found = checks(environ)["bot token"]
    assert found.ok and found.warning and "cannot be told" in found.detail
