"""The ASGI door, served by a real uvicorn on loopback and called with a real HTTP client:
bare, mounted in FastAPI, and mounted in Starlette."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest
import requests
from conftest import emulator_config, eventually
from test_trust_hostile import agent_reply, sign

from chatwoot_mirror import Mirror
from chatwoot_mirror.asgi import create_app
from chatwoot_mirror.integrations import UazapiAdapter
from chatwoot_mirror.integrations.asgi import create_provider_app, create_typebot_app
from chatwoot_mirror.testing import FakeChatwoot
from chatwoot_mirror.webhooks import MAX_BYTES

uvicorn = pytest.importorskip("uvicorn")

SECRET = "inbox-secret"
MARIA = "5511987654321"


class Uvicorn:
    """``app`` under a real uvicorn on a free loopback port, in a thread."""

    def __init__(self, app) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="auto"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def mounted(kind: str, mirror: Mirror):
    """The host's ASGI app: ours bare, or mounted at /chatwoot in FastAPI or Starlette."""
    chatwoot_app = create_app(mirror)
    uazapi_app = create_provider_app(mirror, UazapiAdapter("http://127.0.0.1:9", "tok"),
                                     lambda event: "oi do bot")
    if kind == "bare":
        return chatwoot_app, ""
    if kind == "fastapi":
        from fastapi import FastAPI

        app = FastAPI()
        app.mount("/chatwoot", chatwoot_app)
        app.mount("/uazapi", uazapi_app)
        app.mount("/typebot", create_typebot_app(mirror, "typebot-token"))
        return app, "/chatwoot"
    from starlette.applications import Starlette
    from starlette.routing import Mount

    return Starlette(routes=[Mount("/chatwoot", app=chatwoot_app),
                             Mount("/uazapi", app=uazapi_app)]), "/chatwoot"


@pytest.fixture
def chatwoot(tmp_path):
    with FakeChatwoot(webhook_secret=SECRET) as cw:
        with Mirror(emulator_config(cw, tmp_path / "m.db", webhook_secret=SECRET)) as mirror:
            yield cw, mirror


@pytest.mark.parametrize("kind", ["bare", "fastapi", "starlette"])
def test_the_handoff_loop_through_the_asgi_app(chatwoot, kind):
    cw, mirror = chatwoot
    app, prefix = mounted(kind, mirror)
    server = Uvicorn(app)
    sent = []
    mirror.on_agent_message(lambda message: sent.append(message) or "wamid.1")
    try:
        cw.webhook_url = f"{server.url}{prefix}/webhook"
        assert mirror.log_exchange(MARIA, "oi", "olá") and mirror.flush()
        [conv] = cw.conversations()
        cw.agent_reply(conv["id"], "Olá, sou a Ana")  # a real signed webhook over HTTP
        assert eventually(lambda: mirror.is_paused(MARIA))
        assert eventually(lambda: [m.text for m in sent] == ["Olá, sou a Ana"])
        assert [e["status"] for e in cw.webhook_log if e["event"] == "message_created"
                and e.get("status")][-1] == 200
        cw.resolve(conv["id"])
        assert eventually(lambda: not mirror.is_paused(MARIA))
    finally:
        server.close()


@pytest.mark.parametrize("kind", ["bare", "fastapi"])
def test_bad_input_gets_a_4xx_through_the_asgi_app(chatwoot, kind):
    _, mirror = chatwoot
    app, prefix = mounted(kind, mirror)
    server = Uvicorn(app)
    try:
        url = f"{server.url}{prefix}/webhook"
        body = json.dumps(agent_reply("oi", time.time())).encode()
        assert requests.post(url, data=body, timeout=10).status_code == 401  # unsigned
        bad = {**sign(body), "X-Chatwoot-Timestamp": "1" * 5000}
        assert requests.post(url, data=body, headers=bad, timeout=10).status_code == 401
        deep = b"[" * 100_000 + b"]" * 100_000
        assert requests.post(url, data=deep, headers=sign(deep), timeout=10).status_code == 400
        if kind == "bare":
            assert requests.get(url, timeout=10).status_code == 405
            assert requests.post(f"{server.url}/nowhere", timeout=10).status_code == 404
        # a chunked body over the limit is refused without being read whole
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.putrequest("POST", f"{prefix}/webhook")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        status = None
        try:
            chunk = b"x" * 65536
            for _ in range((MAX_BYTES // 65536) + 2):
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
            status = conn.getresponse().status
        except OSError:
            pass
        assert status in (413, None)
        assert not mirror.is_paused(MARIA) and mirror.stats()["queued"] == 0
    finally:
        server.close()


def test_provider_and_typebot_routes_through_fastapi(chatwoot):
    cw, mirror = chatwoot
    app, _ = mounted("fastapi", mirror)
    server = Uvicorn(app)
    replies = []
    try:
        mirror.on_agent_message(lambda message: replies.append(message.text) or "id")
        body = json.dumps({
            "EventType": "messages", "token": "tok",
            "message": {"chatid": f"{MARIA}@s.whatsapp.net", "sender": f"{MARIA}@s.whatsapp.net",
                        "senderName": "Maria", "messageid": "3EB0ASGI1",
                        "messageTimestamp": 1764590000000, "messageType": "Conversation",
                        "text": "oi", "fromMe": False, "isGroup": False,
                        "wasSentByApi": False}}).encode()
        answer = requests.post(f"{server.url}/uazapi/webhook", data=body, timeout=10)
        assert answer.status_code == 200 and answer.json()["events"] == ["queued"]
        assert mirror.flush() and mirror.flush()  # the bot's turn, then its reply
        shown = [m["content"] for m in cw.messages()]
        assert shown[:2] == ["oi", "oi do bot"]
        # the adapter's provider (port 9) refuses the reply: a note may already say so
        assert all(m.startswith("Mensagem não entregue") for m in shown[2:]), shown
        handoff = requests.post(f"{server.url}/typebot/handoff", json={"phone": MARIA},
                                headers={"Authorization": "Bearer typebot-token"}, timeout=10)
        assert handoff.status_code == 200 and handoff.json()["handed_off"] is True
        assert mirror.is_paused(MARIA)
    finally:
        server.close()


def test_a_client_that_leaves_mid_body_is_not_handled(chatwoot):
    """ASGI calls, driven by hand: a body cut off by a disconnect never reaches the handler;
    an empty body does (and is refused as JSON)."""
    import asyncio

    _, mirror = chatwoot
    app = create_app(mirror)
    body = json.dumps(agent_reply("oi", time.time())).encode()

    def run(messages):
        sent = []

        async def receive():
            return messages.pop(0)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/webhook", "query_string": b"",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in sign(body).items()]}
        asyncio.run(app(scope, receive, send))
        return sent

    cut = run([{"type": "http.request", "body": body[:20], "more_body": True},
               {"type": "http.disconnect"}])
    assert cut == [] and not mirror.is_paused(MARIA)
    whole = run([{"type": "http.request", "body": body[:20], "more_body": True},
                 {"type": "http.request", "body": body[20:], "more_body": False}])
    assert whole[0]["status"] == 200 and mirror.is_paused(MARIA)
    empty = run([{"type": "http.request", "body": b"", "more_body": False}])
    assert empty[0]["status"] == 401  # signed for another body: refused, but handled


def test_flask_and_asgi_serve_one_route_table():
    """Both doors are built from the same table (chatwoot_mirror.routes): a route in it is
    served by both, with the same status and body, over real servers."""
    from conftest import serve_wsgi

    from chatwoot_mirror.asgi import App
    from chatwoot_mirror.flask import blueprint_for
    from chatwoot_mirror.routes import Route
    from chatwoot_mirror.webhooks import WebhookResponse

    def echo(request):
        return WebhookResponse(202, {"got": request.body.decode(), "q": request.query})

    table = [Route("POST", "/echo", echo, 16),
             Route("GET", "/text", render=lambda: (b"plain words", "text/plain"))]
    from flask import Flask

    flask_app = Flask(__name__)
    flask_app.register_blueprint(blueprint_for(table, "t"))
    wsgi = serve_wsgi(flask_app)
    asgi = Uvicorn(App(table))
    try:
        for base in (f"http://127.0.0.1:{wsgi.server_port}", asgi.url):
            answer = requests.post(f"{base}/echo?x=1", data=b"hello", timeout=5)
            assert (answer.status_code, answer.json()) == (202, {"got": "hello",
                                                                 "q": {"x": "1"}})
            assert requests.post(f"{base}/echo", data=b"x" * 17, timeout=5).status_code == 413
            text = requests.get(f"{base}/text", timeout=5)
            assert (text.status_code, text.text) == (200, "plain words")
            assert text.headers["content-type"].startswith("text/plain")
            assert requests.get(f"{base}/echo", timeout=5).status_code == 405
    finally:
        wsgi.shutdown()
        asgi.close()
