"""Outbound requests: files are fetched only from where they should be, within one time
budget, and never by every worker at once; agents' files are never passed to providers
from a private address.

Real HTTP servers on several loopback addresses play the parts (Linux routes all of
127.0.0.0/8 to loopback): 127.0.0.1 the uazapi server, 127.0.0.2 a public file host
(allowed here by name, as an operator would a CDN), 127.0.0.3 an internal service that
must never be reached.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import responses
from conftest import eventually, serve_wsgi

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.client import Attachment
from chatwoot_mirror.integrations import Dialog360Adapter, UazapiAdapter
from chatwoot_mirror.media import MediaError, MediaRef
from chatwoot_mirror.outbound import OutboundPolicy, RefusedTarget
from chatwoot_mirror.relay import AgentMessage
from chatwoot_mirror.testing import FakeChatwoot

MARIA = "5511987654321"


class Recorder(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    seen: list[str] = []

    def _answer(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        status, headers, body = self.routes.get(self.path, (404, {}, b"{}"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


def serve(host: str, routes: dict) -> tuple[ThreadingHTTPServer, list[str]]:
    handler = type("H", (Recorder,), {"routes": routes, "seen": []})
    server = ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler.seen


@pytest.fixture
def hosts():
    internal, internal_seen = serve("127.0.0.3", {"/secret": (200, {}, b"internal bytes")})
    cdn_routes: dict = {}
    cdn, cdn_seen = serve("127.0.0.2", cdn_routes)
    uazapi_routes: dict = {}
    uazapi, uazapi_seen = serve("127.0.0.1", uazapi_routes)
    yield {
        "internal": (internal, internal_seen), "cdn": (cdn, cdn_routes, cdn_seen),
        "uazapi": (uazapi, uazapi_routes, uazapi_seen),
    }
    for server in (internal, cdn, uazapi):
        server.shutdown()


def url_of(server: ThreadingHTTPServer, path: str) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}{path}"


def uazapi_answers(routes: dict, file_url: str) -> None:
    routes["/message/download"] = (200, {"Content-Type": "application/json"},
                                   json.dumps({"fileURL": file_url,
                                               "mimetype": "image/jpeg"}).encode())


MEDIA = MediaRef("uazapi", "AC3D4FE37D20ED8957FACCDAD9368A4A", "image", "image/jpeg")


def test_a_redirect_into_an_internal_address_is_refused(hosts):
    internal, internal_seen = hosts["internal"]
    cdn, cdn_routes, cdn_seen = hosts["cdn"]
    uazapi, uazapi_routes, _ = hosts["uazapi"]
    cdn_routes["/file.jpg"] = (302, {"Location": url_of(internal, "/secret")}, b"")
    uazapi_answers(uazapi_routes, url_of(cdn, "/file.jpg"))
    adapter = UazapiAdapter(url_of(uazapi, ""), "token")
    adapter.outbound = OutboundPolicy.of(["127.0.0.2"])  # the operator allows the CDN
    with pytest.raises(RefusedTarget, match="127.0.0.3"):
        adapter.download(MEDIA, 1_000_000)
    assert cdn_seen == ["GET /file.jpg"]
    assert internal_seen == []  # never reached


def test_a_redirect_to_an_allowed_host_is_followed_without_the_providers_headers(hosts):
    cdn, cdn_routes, cdn_seen = hosts["cdn"]
    uazapi, uazapi_routes, _ = hosts["uazapi"]
    cdn_routes["/file.jpg"] = (200, {"Content-Type": "image/jpeg"}, b"\xff\xd8jpeg")
    uazapi_routes["/files/a.jpg"] = (301, {"Location": url_of(cdn, "/file.jpg")}, b"")
    uazapi_answers(uazapi_routes, url_of(uazapi, "/files/a.jpg"))
    adapter = UazapiAdapter(url_of(uazapi, ""), "token")
    adapter.outbound = OutboundPolicy.of(["127.0.0.2"])
    attachment = adapter.download(MEDIA, 1_000_000)
    assert attachment.data == b"\xff\xd8jpeg"


@pytest.mark.parametrize("file_url", [
    "http://169.254.169.254/latest/meta-data/iam",
    "http://127.0.0.3:6379/",
    "http://[::1]:8080/",
    "http://localhost:8080/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:25/",
])
def test_provider_given_file_urls_to_private_targets_are_refused(hosts, file_url):
    uazapi, uazapi_routes, _ = hosts["uazapi"]
    internal, internal_seen = hosts["internal"]
    uazapi_answers(uazapi_routes, file_url)
    adapter = UazapiAdapter(url_of(uazapi, ""), "token")
    with pytest.raises(RefusedTarget):
        adapter.download(MEDIA, 1_000_000)
    assert internal_seen == []


def test_the_policy_checks_resolved_addresses():
    policy = OutboundPolicy(resolve=lambda host, port: {"cdn.example.com": ["93.184.215.14"],
                                                       "evil.example.com": ["10.0.0.8"],
                                                       "mapped.example.com": ["::ffff:127.0.0.1"]
                                                       }[host])
    assert policy.check("https://cdn.example.com/f.jpg") == "https://cdn.example.com/f.jpg"
    for host in ("evil.example.com", "mapped.example.com"):
        with pytest.raises(RefusedTarget):
            policy.check(f"https://{host}/f.jpg")
    allowed = OutboundPolicy(frozenset({"evil.example.com"}), resolve=policy.resolve)
    assert allowed.check("https://evil.example.com/f.jpg")


@responses.activate
@pytest.mark.parametrize("media_id", ["../../admin", "123/../../v1/settings", "12%2F..", "",
                                      "1" * 40])
def test_a_360dialog_media_id_of_another_shape_is_never_put_in_a_url(media_id):
    adapter = Dialog360Adapter("key", "https://waba-v2.360dialog.io")
    with pytest.raises(MediaError, match="shape"):
        adapter.download(MediaRef("dialog360", media_id, "image"), 1_000_000)
    assert len(responses.calls) == 0


# -- Chatwoot's data_url, passed on to providers --------------------------------------------

def agent_reply_with_files(cw: FakeChatwoot, conversation_id: int, urls: list[str]) -> None:
    cw.agent_reply(conversation_id, "segue", attachments=[
        {"file_type": "file", "data_url": url, "fallback_title": f"f{i}.pdf"}
        for i, url in enumerate(urls)])


def test_agent_files_at_private_targets_are_not_passed_to_the_provider(tmp_path):
    from flask import Flask

    from chatwoot_mirror.flask import create_blueprint

    with FakeChatwoot(webhook_secret="s") as cw:
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        account_id=cw.account_id, bot_token=cw.bot_token, webhook_secret="s",
                        db_path=str(tmp_path / "m.db"), max_requests_per_minute=0)
        with Mirror(config) as mirror:
            sent: list[AgentMessage] = []
            mirror.on_agent_message(lambda m: sent.append(m) or "wamid.1")
            app = Flask(__name__)
            app.register_blueprint(create_blueprint(mirror), url_prefix="/chatwoot")
            server = serve_wsgi(app)
            cw.webhook_url = f"http://127.0.0.1:{server.server_port}/chatwoot/webhook"
            try:
                assert mirror.log_incoming(MARIA, "oi") and mirror.flush()
                [conv] = cw.conversations()
                stored = cw.upload(b"%PDF-1.4", "recibo.pdf", "application/pdf")["data_url"]
                agent_reply_with_files(cw, conv["id"], [
                    "file:///etc/passwd",
                    "http://169.254.169.254/latest/meta-data/",
                    "http://10.0.0.5/admin",
                    "https://files.example.com/boleto.pdf",
                    stored,
                ])
                assert eventually(lambda: len(sent) == 1)
            finally:
                server.shutdown()
        urls = [a.url for a in sent[0].attachments]
        assert urls == ["https://files.example.com/boleto.pdf", f"{cw.url}{stored}"]


# -- the time budget ------------------------------------------------------------------------

def test_a_download_that_drips_is_cut_off_by_its_budget():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    sent = [0]
    closed = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 100000\r\n\r\n")
        try:
            for _ in range(100000):  # one byte every 50 ms: never a read timeout
                conn.sendall(b"x")
                sent[0] += 1
                time.sleep(0.05)
        except OSError:
            closed.set()  # we were cut off
        conn.close()

    threading.Thread(target=drip, daemon=True).start()
    policy = OutboundPolicy.of(["127.0.0.1"], download_seconds=1)
    import requests

    with pytest.raises(MediaError, match="not finished within 1 s") as info:
        policy.fetch(requests.Session(), f"http://127.0.0.1:{port}/slow.jpg",
                     max_bytes=1_000_000, timeout=(3, 15))
    assert info.value.retryable
    assert closed.wait(10)
    assert sent[0] < 100000
    listener.close()


def test_files_never_occupy_every_worker(tmp_path):
    release = threading.Event()
    started: list[str] = []

    def slow_fetch(ref: MediaRef, max_bytes: int) -> Attachment:
        started.append(ref.ref)
        release.wait(30)
        return Attachment(b"\x89PNG", f"{ref.ref}.png", "image/png")

    with FakeChatwoot() as cw:
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        account_id=cw.account_id, bot_token=cw.bot_token, workers=2,
                        db_path=str(tmp_path / "m.db"), max_requests_per_minute=0,
                        retry_base_seconds=0.05, retry_max_seconds=0.2)
        with Mirror(config) as mirror:
            mirror.on_media_download("slow", slow_fetch)
            for i, phone in enumerate(["5511911110001", "5511911110002"]):
                assert mirror.log_incoming(phone, "", attachments=[
                    MediaRef("slow", f"file{i}", "image", "image/png")])
            assert eventually(lambda: len(started) == 1)
            assert mirror.log_incoming(MARIA, "só um texto")
            # the second worker is free for texts while the first waits on a slow host
            assert eventually(lambda: "só um texto" in [m["content"] for m in cw.messages()])
            assert len(started) == 1  # the second file waits for a download slot
            release.set()
            assert mirror.flush(timeout=20)
            assert mirror.dead_letters() == []
        assert sorted(started) == ["file0", "file1"]
        files = [m for m in cw.messages() if m.get("attachments")]
        assert len(files) == 2


def test_base64_answers_need_no_fetch(hosts):
    uazapi, uazapi_routes, _ = hosts["uazapi"]
    uazapi_routes["/message/download"] = (200, {"Content-Type": "application/json"},
                                          json.dumps({"base64Data": base64.b64encode(
                                              b"png!").decode(), "mimetype": "image/png"}
                                          ).encode())
    adapter = UazapiAdapter(url_of(uazapi, ""), "token")
    assert adapter.download(MEDIA, 1000).data == b"png!"
