"""Secrets never reach logs, ours or our dependencies'; the sample bot's console is not an
open door once real credentials are configured."""

from __future__ import annotations

import configparser
import logging
import os
import threading

import pytest
import requests
from conftest import ROOT, serve_wsgi
from flask import Flask
from werkzeug.serving import make_server

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.flask import create_blueprint
from chatwoot_mirror.redaction import RedactSecrets, install
from chatwoot_mirror.testing import FakeChatwoot

WEBHOOK_TOKEN = "old-chatwoot-url-token-123"


def test_query_tokens_and_the_inbox_identifier_never_reach_any_log(tmp_path, caplog):
    with FakeChatwoot() as cw:
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        account_id=cw.account_id, bot_token=cw.bot_token,
                        webhook_token=WEBHOOK_TOKEN, db_path=str(tmp_path / "m.db"),
                        max_requests_per_minute=0)
        caplog.set_level(logging.DEBUG)  # everything, urllib3's DEBUG lines included
        with Mirror(config) as mirror:
            app = Flask(__name__)
            app.register_blueprint(create_blueprint(mirror), url_prefix="/chatwoot")
            server = serve_wsgi(app)
            try:
                url = f"http://127.0.0.1:{server.server_port}/chatwoot/webhook"
                answer = requests.post(f"{url}?token={WEBHOOK_TOKEN}",
                                       json={"event": "conversation_created"}, timeout=10)
                assert answer.status_code == 200
                assert mirror.log_exchange("5511987654321", "oi", "olá") and mirror.flush()
            finally:
                server.shutdown()
        text = "\n".join(r.getMessage() for r in caplog.records)
        werkzeug = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
        urllib3 = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
        assert any("/chatwoot/webhook?token=***" in line for line in werkzeug)
        assert any("/public/api/v1/inboxes/***/contacts" in line for line in urllib3)
        for secret in (WEBHOOK_TOKEN, cw.inbox_identifier, cw.bot_token):
            assert secret not in text


def test_the_filter_masks_arguments_and_tracebacks_and_drops_nothing():
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1,
                               '"%s" %s', ("POST /x?token=abcdefgh HTTP/1.1", 200), None)
    record.exc_text = "Traceback: abcdefgh"
    assert RedactSecrets(["abcdefgh", "abc"]).filter(record) is True
    assert record.getMessage() == '"POST /x?token=*** HTTP/1.1" 200'
    assert record.exc_text == "Traceback: ***"


def test_install_adds_to_the_host_handlers_once():
    handler = logging.StreamHandler()
    shared = install(["host-own-secret-1"], loggers=(), handlers=[handler])
    install(["host-own-secret-2"], loggers=(), handlers=[handler])
    assert handler.filters.count(shared) == 1
    assert shared.redact("a host-own-secret-2 b") == "a *** b"


def test_lower_bounds_are_past_known_advisories():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    requires = parser["options"]["install_requires"]
    assert "requests>=2.32.4" in requires and "flask>=2.3.2" in requires


# -- the sample bot's console ----------------------------------------------------------------

@pytest.fixture
def real_provider_sample(tmp_path):
    from chatwoot_mirror.sample_bot.app import build

    server = make_server("127.0.0.1", 0, app=None, threaded=True)  # type: ignore[arg-type]
    provider_calls: list[str] = []
    provider = Flask("provider")

    @provider.post("/send/text")
    def send_text():
        provider_calls.append("send/text")
        return {"messageid": "3EB0REAL"}

    provider_server = serve_wsgi(provider)
    env = {"CHATWOOT_MIRROR_DB": str(tmp_path / "m.db"), "PATH": os.environ.get("PATH", ""),
           "UAZAPI_URL": f"http://127.0.0.1:{provider_server.server_port}",
           "UAZAPI_TOKEN": "real-instance-token"}
    bot = build(server.server_port, env)
    server.app = bot.app
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield bot, provider_calls
    server.shutdown()
    provider_server.shutdown()
    bot.close()


def test_with_a_real_provider_the_console_needs_the_printed_token(real_provider_sample, caplog):
    bot, provider_calls = real_provider_sample
    caplog.set_level(logging.INFO, logger="werkzeug")
    assert bot.console_token
    assert bot.urls()["console"].endswith(f"/?token={bot.console_token}")
    for method, path in (("POST", "/demo/phone/send"), ("GET", "/demo/state"),
                         ("POST", "/demo/agent/resolve"), ("GET", "/")):
        answer = requests.request(method, bot.base_url + path, json={"text": "oi"}, timeout=10)
        assert answer.status_code == 401, path
        wrong = requests.request(method, bot.base_url + path, json={"text": "oi"}, timeout=10,
                                 headers={"X-Console-Token": "guess"})
        assert wrong.status_code == 401, path
    assert provider_calls == []  # nobody was messaged through the real provider
    page = requests.get(bot.urls()["console"], timeout=10)
    assert page.status_code == 200
    access = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("/?token=***" in line for line in access)
    assert not any(bot.console_token in line for line in access)
    state = requests.get(bot.base_url + "/demo/state", timeout=10,
                         headers={"X-Console-Token": bot.console_token})
    assert state.status_code == 200


def test_in_emulator_mode_the_console_is_open(tmp_path):
    from chatwoot_mirror.sample_bot.app import build

    bot = build(5999, {"CHATWOOT_MIRROR_DB": str(tmp_path / "m.db")})
    try:
        assert bot.console_token is None and bot.urls()["console"].endswith(":5999/")
    finally:
        bot.close()
