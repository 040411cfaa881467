"""The chatwoot-mirror command: doctor (one test per problem it reports), status, flush,
retry-dead, emulator."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import pytest
import requests

from chatwoot_mirror import Config, Mirror, cli, doctor
from chatwoot_mirror.testing import FakeChatwoot

PUBLIC_HOOK = "https://93.184.215.14/chatwoot/webhook"


def env_for(cw: FakeChatwoot, tmp_path, **extra: str) -> dict[str, str]:
    return {**cw.env(), "CHATWOOT_API_TOKEN": cw.user_token,
            "CHATWOOT_MIRROR_DB": str(tmp_path / "m.db"), **extra}


def problems(environ: dict[str, str]) -> dict[str, doctor.Check]:
    return {c.name: c for c in doctor.run(environ, dotenv=False) if not c.ok}


@pytest.fixture
def healthy():
    with FakeChatwoot(webhook_secret="s3cret", lock_to_single_conversation=True,
                      webhook_url=PUBLIC_HOOK) as cw:
        yield cw


def test_doctor_all_good(healthy, tmp_path, monkeypatch):
    environ = env_for(healthy, tmp_path)
    assert problems(environ) == {}
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert cli.main(["doctor"], out) == 0
    text = out.getvalue()
    assert "everything looks right" in text and "PROBLEM" not in text
    for secret in (healthy.user_token, healthy.bot_token, "s3cret"):
        assert secret not in text


def test_doctor_bad_configuration_names_the_variable(tmp_path, monkeypatch):
    [check] = doctor.run({"CHATWOOT_URL": "https://chat.example.com"}, dotenv=False)
    assert not check.ok and "CHATWOOT_INBOX_ID" in check.detail
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHATWOOT_INBOX_ID", raising=False)
    monkeypatch.setenv("CHATWOOT_URL", "https://chat.example.com/public/api/v1")
    out = io.StringIO()
    assert cli.main(["doctor"], out) == 1
    assert "PROBLEM configuration: CHATWOOT_URL" in out.getvalue()
    assert "fix:" in out.getvalue()


def test_doctor_unwritable_store(healthy, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    found = problems(env_for(healthy, tmp_path, CHATWOOT_MIRROR_DB=str(blocker / "m.db")))
    assert set(found) == {"store"} and "CHATWOOT_MIRROR_DB" in found["store"].fix


def test_doctor_chatwoot_unreachable(tmp_path):
    found = problems({"CHATWOOT_URL": "http://127.0.0.1:9", "CHATWOOT_INBOX_ID": "abc",
                      "CHATWOOT_MIRROR_DB": str(tmp_path / "m.db"),
                      "CHATWOOT_CONNECT_TIMEOUT": "0.5"})
    assert set(found) == {"chatwoot"} and "CHATWOOT_URL" in found["chatwoot"].fix


def test_doctor_unknown_inbox(healthy, tmp_path):
    found = problems(env_for(healthy, tmp_path, CHATWOOT_INBOX_ID="NoSuchInbox"))
    assert set(found) == {"inbox"} and "Inbox Identifier" in found["inbox"].fix


def test_doctor_refused_api_token(healthy, tmp_path):
    found = problems(env_for(healthy, tmp_path, CHATWOOT_API_TOKEN="wrong"))
    assert set(found) == {"inbox settings"} and "access token" in found["inbox settings"].fix


def test_doctor_missing_webhook_url(tmp_path):
    with FakeChatwoot(webhook_secret="s3cret", lock_to_single_conversation=True) as cw:
        found = problems(env_for(cw, tmp_path))
    assert set(found) == {"webhook url"} and "/chatwoot/webhook" in found["webhook url"].fix


def test_doctor_private_webhook_url(healthy, tmp_path):
    healthy.webhook_url = "http://192.168.0.10:5000/chatwoot/webhook"
    found = problems(env_for(healthy, tmp_path))
    assert set(found) == {"webhook url"}
    assert "SAFE_FETCH_ALLOW_PRIVATE_NETWORK" in found["webhook url"].fix
    healthy.webhook_url = "http://localhost:5000/chatwoot/webhook"
    assert set(problems(env_for(healthy, tmp_path))) == {"webhook url"}


def test_doctor_secret_missing_or_different(healthy, tmp_path):
    environ = env_for(healthy, tmp_path)
    del environ["CHATWOOT_WEBHOOK_SECRET"]
    environ["CHATWOOT_WEBHOOK_INSECURE"] = "true"
    found = problems(environ)
    assert set(found) == {"webhook secret"} and "is not set" in found["webhook secret"].detail
    found = problems(env_for(healthy, tmp_path, CHATWOOT_WEBHOOK_SECRET="other"))
    assert set(found) == {"webhook secret"} and "differs" in found["webhook secret"].detail


def test_doctor_unsigned_chatwoot_needs_a_url_token(tmp_path):
    with FakeChatwoot(lock_to_single_conversation=True, webhook_url=PUBLIC_HOOK) as cw:
        environ = env_for(cw, tmp_path, CHATWOOT_WEBHOOK_INSECURE="true")
        assert problems(environ) == {}  # said on purpose
        del environ["CHATWOOT_WEBHOOK_INSECURE"]
        environ["CHATWOOT_WEBHOOK_TOKEN"] = "tok"
        found = problems(environ)
        assert set(found) == {"webhook secret"} and "?token=" in found["webhook secret"].fix
        cw.webhook_url = PUBLIC_HOOK + "?token=tok"
        assert problems(environ) == {}


def test_doctor_conversation_lock_off(tmp_path):
    with FakeChatwoot(webhook_secret="s3cret", webhook_url=PUBLIC_HOOK) as cw:
        found = problems(env_for(cw, tmp_path))
    assert set(found) == {"conversation lock"}
    assert "Lock to single conversation" in found["conversation lock"].fix


def test_doctor_without_api_token_says_what_it_did_not_check(healthy, tmp_path):
    environ = env_for(healthy, tmp_path)
    del environ["CHATWOOT_API_TOKEN"]
    checks = doctor.run(environ, dotenv=False)
    assert all(c.ok for c in checks)
    assert "CHATWOOT_API_TOKEN" in checks[-1].detail
    # issue #17: what the provider's receipts cannot do without it
    [status] = [c for c in checks if c.name == "delivery status"]
    assert status.warning and "ticks" in status.detail and "private note" in status.detail


def test_status_flush_and_retry_dead(tmp_path, monkeypatch):
    with FakeChatwoot() as cw:
        environ = {**cw.env(), "CHATWOOT_MIRROR_DB": str(tmp_path / "m.db")}
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path)
        config = Config.from_env(dotenv=False)
        with Mirror(config, start=False) as mirror:  # a bot that queued and stopped
            mirror.log_exchange("5511988887777", "oi", "olá")
            mirror.handoff("5511977776666", "user_request")
            mirror.store.close()
        out = io.StringIO()
        assert cli.main(["status", "--json"], out) == 0
        report = json.loads(out.getvalue())
        assert report["queued"] >= 2 and report["dead_letters"] == 0
        assert [p["contact"] for p in report["paused_contacts"]] == ["wa-5511977776666"]
        out = io.StringIO()
        assert cli.main(["flush", "--timeout", "20"], out) == 0
        assert "delivered everything" in out.getvalue()
        [conv] = [c for c in cw.conversations()
                  if c["meta"]["sender"]["phone_number"] == "+5511988887777"]
        assert [m["content"] for m in cw.messages(conv["id"])] == ["oi", "olá"]
        out = io.StringIO()
        assert cli.main(["status"], out) == 0
        assert "queued: 0" in out.getvalue() and "wa-5511977776666" in out.getvalue()
        out = io.StringIO()
        assert cli.main(["retry-dead"], out) == 0
        assert out.getvalue().startswith("0 dead letter(s) queued again")


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "chatwoot_mirror.cli", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for command in ("doctor", "status", "flush", "retry-dead", "emulator"):
        assert command in done.stdout


def test_emulator_command_serves_chatwoot(tmp_path):
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [sys.executable, "-m", "chatwoot_mirror.cli", "emulator", "--port", "0",
         "--inbox-identifier", "cliinbox", "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text()):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}/public/api/v1/inboxes/cliinbox"
        assert requests.get(url, timeout=5).json()["identifier"] == "cliinbox"
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0
