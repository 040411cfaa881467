"""Hostile and broken input, over HTTP against a real WSGI server: every malformed webhook
gets a 4xx and changes nothing before authentication; no body is read past the limit;
half an emoji is mirrored with the broken half replaced; event times cannot poison the
handoff clock; webhook answers say what happened.

Payloads are written here in the shape of Chatwoot's webhooks (``message_created``,
``conversation_status_changed``: Chatwoot's ``app/models/message.rb#webhook_data`` and
``app/presenters/conversations/event_data_presenter.rb``) and the providers' documented
webhooks (uazapi's flat ``{EventType, message, token}``, 360dialog's Cloud API envelope).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import time
from datetime import datetime, timezone

import pytest
import requests
from conftest import emulator_config, eventually, serve_wsgi
from flask import Flask

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.errors import ConfigError
from chatwoot_mirror.flask import create_blueprint
from chatwoot_mirror.integrations import Dialog360Adapter, UazapiAdapter, ZproAdapter
from chatwoot_mirror.integrations.flask import create_provider_blueprint, create_typebot_blueprint
from chatwoot_mirror.testing import FakeChatwoot
from chatwoot_mirror.webhooks import MAX_BYTES, WebhookRequest

SECRET = "inbox-secret"
UAZAPI_TOKEN = "uazapi-instance-token"
D360_SECRET = "d360-shared-secret"
ZPRO_SECRET = "zpro-shared-secret"
TYPEBOT_TOKEN = "typebot-token"
MARIA = "5511987654321"
KEY = f"wa-{MARIA}"


class CountingInput:
    """wsgi.input that counts what the application read of the body."""

    def __init__(self, stream, counter: list[int]) -> None:
        self.stream = stream
        self.counter = counter

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.counter[0] += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self.stream.readline(size)
        self.counter[0] += len(data)
        return data


class Server:
    def __init__(self, mirror: Mirror) -> None:
        app = Flask(__name__)
        app.register_blueprint(create_blueprint(mirror), url_prefix="/chatwoot")
        bot = lambda event: "resposta do bot"  # noqa: E731
        app.register_blueprint(create_provider_blueprint(
            mirror, UazapiAdapter("http://127.0.0.1:9", UAZAPI_TOKEN), bot), url_prefix="/uazapi")
        app.register_blueprint(create_provider_blueprint(
            mirror, Dialog360Adapter("key", "http://127.0.0.1:9", webhook_secret=D360_SECRET),
            bot), url_prefix="/360dialog")
        app.register_blueprint(create_provider_blueprint(
            mirror, ZproAdapter("http://127.0.0.1:9", "api", "tok", webhook_secret=ZPRO_SECRET),
            bot), url_prefix="/zpro")
        app.register_blueprint(create_typebot_blueprint(mirror, TYPEBOT_TOKEN),
                               url_prefix="/typebot")
        self.read = [0]
        inner = app.wsgi_app

        def counting(environ, start_response):
            environ["wsgi.input"] = CountingInput(environ["wsgi.input"], self.read)
            return inner(environ, start_response)

        app.wsgi_app = counting  # type: ignore[method-assign]
        self.server = serve_wsgi(app)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def host(tmp_path):
    with FakeChatwoot(webhook_secret=SECRET) as cw:
        mirror = Mirror(emulator_config(cw, tmp_path / "m.db", webhook_secret=SECRET))
        server = Server(mirror)
        sent: list = []  # in place of the adapters' own sending (no provider here)
        mirror.on_agent_message(lambda m: sent.append(m) or "wamid.1")
        yield server, mirror, cw, sent
        server.close()
        mirror.close(timeout=1)


def sign(body: bytes, stamp: str | None = None) -> dict[str, str]:
    stamp = str(int(time.time())) if stamp is None else stamp
    digest = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Chatwoot-Timestamp": stamp, "X-Chatwoot-Signature": f"sha256={digest}",
            "Content-Type": "application/json"}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def agent_reply(content: str, at: float, message_id: int = 9001) -> dict:
    return {
        "event": "message_created", "id": message_id, "content": content,
        "message_type": "outgoing", "private": False, "created_at": iso(at),
        "content_attributes": {}, "source_id": None,
        "sender": {"id": 3, "name": "Ana Agente", "type": "user"},
        "conversation": {"id": 128, "contact_inbox": {"source_id": KEY},
                         "meta": {"sender": {"phone_number": f"+{MARIA}"}}},
    }


def status_changed(status: str, updated_at: object) -> bytes:
    # written by hand: json.dumps cannot write 1e18 as Chatwoot-style JSON literally
    return (b'{"event":"conversation_status_changed","id":128,"status":"' + status.encode()
            + b'","updated_at":' + str(updated_at).encode()
            + b',"contact_inbox":{"source_id":"' + KEY.encode() + b'"}}')


def nothing_changed(mirror: Mirror) -> bool:
    stats = mirror.stats()
    return not mirror.is_paused(MARIA) and stats["queued"] == 0 and stats["in_flight"] == 0


# -- signature headers ---------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"X-Chatwoot-Timestamp": "²"},  # isdigit() is true, int() fails
    {"X-Chatwoot-Timestamp": "1" * 5000},  # too many digits for int()
    {"X-Chatwoot-Timestamp": "-1"},
    {"X-Chatwoot-Signature": "sha256=" + "é" * 64},  # compare_digest refuses non-ASCII str
    {"X-Chatwoot-Signature": "sha256="},
], ids=["superscript", "5000-digits", "negative", "non-ascii-signature", "empty-signature"])
def test_malformed_signature_headers_get_401_and_change_nothing(host, headers):
    server, mirror, _, sent = host
    body = json.dumps(agent_reply("oi", time.time())).encode()
    sent_headers = {**sign(body), **headers}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/chatwoot/webhook")
    for name, value in sent_headers.items():
        conn.putheader(name, value.encode("latin-1") if not value.isascii() else value)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    response = conn.getresponse()
    assert response.status == 401
    assert json.loads(response.read())["result"] == "unauthorized"
    assert nothing_changed(mirror) and sent == []


# -- deeply nested JSON, on every endpoint ----------------------------------------------------

DEEP = b"[" * 200_000 + b"]" * 200_000


@pytest.mark.parametrize("path,headers,body", [
    ("/chatwoot/webhook", None, DEEP),
    ("/chatwoot/webhook", None, b'{"event":"message_created","x":' + DEEP + b"}"),
    ("/360dialog/webhook", {"X-Webhook-Secret": D360_SECRET}, DEEP),
    ("/zpro/webhook", {"Authorization": f"Bearer {ZPRO_SECRET}"}, DEEP),
    ("/uazapi/webhook", {}, DEEP),
    ("/uazapi/webhook", {}, b'{"token":"' + UAZAPI_TOKEN.encode() + b'","x":' + DEEP + b"}"),
    ("/typebot/handoff", {"Authorization": f"Bearer {TYPEBOT_TOKEN}"}, DEEP),
], ids=["chatwoot", "chatwoot-inside", "360dialog", "zpro", "uazapi", "uazapi-inside",
        "typebot"])
def test_deeply_nested_json_gets_4xx_everywhere(host, path, headers, body):
    server, mirror, _, sent = host
    headers = sign(body) if headers is None else {**headers, "Content-Type": "application/json"}
    response = requests.post(server.url + path, data=body, headers=headers, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    assert nothing_changed(mirror) and sent == []


@pytest.mark.parametrize("body", [b'{"event":"x","n":NaN}', b'{"event":"x","n":1e400}'])
def test_non_finite_numbers_are_invalid_json(host, body):
    server, mirror, _, _ = host
    response = requests.post(server.url + "/chatwoot/webhook", data=body, headers=sign(body),
                             timeout=10)
    assert response.status_code == 400
    assert response.json() == {"result": "invalid_json", "reason": "non_finite_number"}


def test_uazapi_with_a_webhook_secret_checks_it_before_parsing(tmp_path):
    adapter = UazapiAdapter("http://127.0.0.1:9", UAZAPI_TOKEN, webhook_secret="our-secret")
    good = json.dumps({"token": UAZAPI_TOKEN, "EventType": "messages"}).encode()
    assert adapter.verify({}, good, {"token": "our-secret"})
    assert not adapter.verify({}, good, {"token": "wrong"})
    assert not adapter.verify({}, good, {})
    calls = []

    import chatwoot_mirror.integrations.uazapi as module

    real = module.parse_json
    module.parse_json = lambda body: calls.append(body) or real(body)
    try:
        assert not adapter.verify({}, DEEP, {"token": "wrong"})
    finally:
        module.parse_json = real
    assert calls == []  # the unauthenticated body was never parsed


# -- bodies without Content-Length -----------------------------------------------------------

def chunked_post(port: int, path: str, total: int) -> int | None:
    """POST ``total`` bytes with Transfer-Encoding: chunked; the answer's status, or None
    when the server closed the connection before one could be read."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", path)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Content-Type", "application/json")
    conn.endheaders()
    chunk = b"[" * 65536
    sent = 0
    try:
        while sent < total:
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server answered and closed: what we wanted
    try:
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None


@pytest.mark.parametrize("path", ["/chatwoot/webhook", "/uazapi/webhook", "/typebot/handoff"])
def test_chunked_body_over_the_limit_is_never_read_whole(host, path):
    server, mirror, _, _ = host
    status = chunked_post(server.port, path, 30 * 1024 * 1024)
    assert status in (413, None)
    assert server.read[0] <= MAX_BYTES + 1 + 65536  # the limit plus one byte, give a chunk
    assert nothing_changed(mirror)
    # and a small chunked body is still read whole and handled
    body = json.dumps(agent_reply("oi", time.time())).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/chatwoot/webhook", body=iter([body]), headers=sign(body),
                 encode_chunked=True)
    assert conn.getresponse().status == 200


# -- half an emoji ----------------------------------------------------------------------------

def test_customer_text_with_half_an_emoji_is_mirrored_with_it_replaced(host):
    _, mirror, cw, _ = host
    assert mirror.log_exchange(MARIA, "meu pedido \ud83d", "já vejo \udc00 aqui",
                               sender_name="Maria \ud83d")
    assert mirror.flush()
    assert [m["content"] for m in cw.messages()] == ["meu pedido \ufffd", "já vejo \ufffd aqui"]
    assert cw.contacts()[0]["name"] == "Maria \ufffd"


def test_provider_webhook_with_half_an_emoji_is_mirrored(host):
    server, mirror, cw, _ = host
    body = (b'{"EventType":"messages","token":"' + UAZAPI_TOKEN.encode() + b'",'
            b'"message":{"chatid":"' + MARIA.encode() + b'@s.whatsapp.net",'
            b'"sender":"' + MARIA.encode() + b'@s.whatsapp.net","senderName":"Maria",'
            b'"messageid":"3EB0C0FFEE","messageTimestamp":1764590000000,'
            b'"messageType":"Conversation","text":"oi \\ud83d","fromMe":false,'
            b'"isGroup":false,"wasSentByApi":false}}')
    response = requests.post(server.url + "/uazapi/webhook", data=body, timeout=10,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert mirror.flush()
    assert [m["content"] for m in cw.messages()][0] == "oi \ufffd"


def test_signed_agent_reply_with_half_an_emoji_is_relayed_not_a_500(host):
    server, mirror, _, sent = host
    body = json.dumps(agent_reply("segue \ud83d", time.time())).encode()  # "\\ud83d" on the wire
    assert b"\\ud83d" in body
    response = requests.post(server.url + "/chatwoot/webhook", data=body, headers=sign(body),
                             timeout=10)
    assert response.status_code == 200 and response.json()["result"] == "paused"
    assert eventually(lambda: [m.text for m in sent] == ["segue \ufffd"])


# -- event times ----------------------------------------------------------------------------

def post_signed(server: Server, body: bytes) -> requests.Response:
    return requests.post(server.url + "/chatwoot/webhook", data=body, headers=sign(body),
                         timeout=10)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400],
                         ids=["NaN", "Infinity", "-Infinity", "1e400", "400-digit-int"])
def test_non_finite_event_times_are_refused(host, value):
    server, mirror, _, _ = host
    assert post_signed(server, json.dumps(agent_reply("oi", time.time())).encode()).ok
    assert mirror.is_paused(MARIA)
    response = post_signed(server, status_changed("resolved", value))
    assert response.status_code == 400
    assert mirror.is_paused(MARIA)  # nothing changed


@contextlib.contextmanager
def clocked_handler(tmp_path, **settings):
    """A mirror's webhook handler whose clock the test moves (``now[0]``)."""
    with FakeChatwoot() as cw:
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        account_id=cw.account_id, bot_token=cw.bot_token,
                        webhook_secret=SECRET, webhook_max_age_seconds=300,
                        db_path=str(tmp_path / "m.db"), max_requests_per_minute=0, **settings)
        with Mirror(config) as mirror:
            handler = mirror.webhook_handler()
            now = [time.time()]
            handler.clock = lambda: now[0]
            yield mirror, handler, now


def test_a_far_future_event_time_cannot_outrank_a_later_real_one(tmp_path):
    """Issue #30: a signed resolve dated 1e18 used to count as now + 300 s, so a genuine
    agent reply a moment later was older and did not pause the bot."""
    with clocked_handler(tmp_path) as (mirror, handler, now):
        def signed(body: bytes) -> WebhookRequest:
            return WebhookRequest(headers=sign(body, str(int(now[0]))), body=body)

        reply = json.dumps(agent_reply("oi", now[0])).encode()
        assert handler.handle(signed(reply)).body["result"] == "paused"
        # a resolve dated in the year 33658 counts as the moment it arrived
        assert handler.handle(signed(status_changed("resolved", "1e18"))).body == {
            "result": "resumed"}
        assert mirror.store.get_handoff(KEY).changed_at == now[0]
        now[0] += 1  # a moment later, a genuine agent reply pauses again
        later = json.dumps(agent_reply("voltei", now[0], message_id=9002)).encode()
        assert handler.handle(signed(later)).body["result"] == "paused"
        assert mirror.is_paused(MARIA)


def test_a_chatwoot_clock_90_s_ahead_still_hands_over_both_ways(tmp_path):
    """Every event (and signature stamp) 90 s ahead: past the allowed skew, each counts
    as its arrival, so the conversation still changes hands in the order things happen."""
    with clocked_handler(tmp_path) as (mirror, handler, now):
        def signed(body: bytes) -> WebhookRequest:
            return WebhookRequest(headers=sign(body, str(int(now[0] + 90))), body=body)

        steps = [(json.dumps(agent_reply("oi", now[0] + 90)).encode(), "paused"),
                 (status_changed("resolved", int(now[0] + 91)), "resumed"),
                 (json.dumps(agent_reply("voltei", now[0] + 92, 9002)).encode(), "paused"),
                 (status_changed("resolved", int(now[0] + 93)), "resumed")]
        for body, expected in steps:
            now[0] += 1
            assert handler.handle(signed(body)).body["result"] == expected
        assert not mirror.is_paused(MARIA)


def test_a_chatwoot_clock_a_little_ahead_keeps_chatwoots_order(tmp_path):
    """Within the skew Chatwoot's times are believed: a late-arriving agent reply older
    than the resolve stays stale."""
    with clocked_handler(tmp_path, event_clock_skew_seconds=5) as (mirror, handler, now):
        def signed(body: bytes) -> WebhookRequest:
            return WebhookRequest(headers=sign(body, str(int(now[0]))), body=body)

        t = now[0]
        assert handler.handle(signed(json.dumps(agent_reply("oi", t)).encode())).body[
            "result"] == "paused"
        assert handler.handle(signed(status_changed("resolved", t + 4))).body[
            "result"] == "resumed"
        late = json.dumps(agent_reply("antes", t + 3, 9002)).encode()  # before the resolve
        assert handler.handle(signed(late)).body["result"] == "stale"
        assert not mirror.is_paused(MARIA)


@pytest.mark.parametrize("value", ["-1", "61", "x"])
def test_the_clock_skew_setting_is_range_checked(value):
    with pytest.raises(ConfigError) as caught:
        Config.from_env({"CHATWOOT_URL": "http://127.0.0.1:9", "CHATWOOT_INBOX_ID": "x",
                         "CHATWOOT_EVENT_CLOCK_SKEW_SECONDS": value}, dotenv=False)
    assert caught.value.variable == "CHATWOOT_EVENT_CLOCK_SKEW_SECONDS"


# -- answers ----------------------------------------------------------------------------------

def test_webhook_answers_say_what_happened(host):
    server, mirror, _, _ = host
    now = time.time()
    first = post_signed(server, json.dumps(agent_reply("oi", now)).encode())
    assert first.json() == {"result": "paused", "relayed": True}
    redelivered = post_signed(server, json.dumps(agent_reply("oi", now)).encode())
    assert redelivered.json() == {"result": "unchanged", "relayed": False}  # queued once
    again = post_signed(server, json.dumps(agent_reply("mais", now + 1, 9002)).encode())
    assert again.json()["result"] == "unchanged"  # already with humans
    resolved = post_signed(server, status_changed("resolved", int(now) + 5))
    assert resolved.json()["result"] == "resumed"
    late = post_signed(server, json.dumps(agent_reply("atrasada", now + 2, 9003)).encode())
    assert late.json()["result"] == "stale"  # older than the resolve: ignored
    assert not mirror.is_paused(MARIA)
    again_resolved = post_signed(server, status_changed("resolved", int(now) + 6))
    assert again_resolved.json()["result"] == "unchanged"
