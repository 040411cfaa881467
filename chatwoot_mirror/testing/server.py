"""FakeChatwoot: the emulator on a loopback port, with webhooks sent the way Chatwoot sends them."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import random
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from .emulator import Emulator, Faults, Request
from .versions import DEFAULT_VERSION

log = logging.getLogger("chatwoot_mirror.testing")

#: The longest FakeChatwoot.stop() waits for its threads (seconds).
STOP_SECONDS = 2.0

# Events the API inbox webhook receives (research §4.1, column b).
INBOX_EVENTS = {
    "message_created", "message_updated", "conversation_created", "conversation_status_changed",
    "conversation_updated", "conversation_typing_on", "conversation_typing_off",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Chatwoot behind a proxy
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK
    # adds ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            # The client went away mid-body (a process killed while sending): a web server
            # never hands such a request to the app, so nothing is created from half a body.
            self.close_connection = True
            return
        path, _, query = self.path.partition("?")
        reply = self.server.emulator.handle(
            Request(self.command, path, query, dict(self.headers.items()), body)
        )
        if reply.drop:
            # Committed, but the answer never arrives: the client cannot tell what happened.
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        data = reply.encoded()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: Emulator


class FakeChatwoot:
    """A faithful fake Chatwoot on ``http://127.0.0.1:<port>`` for tests and demos.

    ``with FakeChatwoot() as cw: ...`` or ``cw.start()`` / ``cw.stop()``. Point the mirror at
    ``cw.url`` with ``cw.inbox_identifier``, ``cw.bot_token`` and account id 1. Agent actions
    (``agent_reply``, ``private_note``, ``assign``, ``unassign``, ``set_status``, ``resolve``)
    produce the webhooks real Chatwoot produces, sent to ``webhook_url``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        inbox_identifier: str | None = None,
        bot_token: str | None = None,
        user_token: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        lock_to_single_conversation: bool = False,
        bot_active: bool = False,
        hmac_token: str | None = None,
        hmac_mandatory: bool = False,
        flood_limit: int = 200,
        flood_window: float = 60.0,
        shuffle_webhooks: bool = False,
        webhook_timeout: float = 5.0,
        faults: Faults | None = None,
        chatwoot_version: str = DEFAULT_VERSION,
        sla_policies: dict[int, str] | None = None,
        api_access: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.emulator = Emulator(
            inbox_identifier=inbox_identifier,
            bot_token=bot_token,
            user_token=user_token,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            lock_to_single_conversation=lock_to_single_conversation,
            bot_active=bot_active,
            hmac_token=hmac_token,
            hmac_mandatory=hmac_mandatory,
            flood_limit=flood_limit,
            flood_window=flood_window,
            faults=faults,
            chatwoot_version=chatwoot_version,
            sla_policies=sla_policies,
            api_access=api_access,
        )
        self.shuffle_webhooks = shuffle_webhooks
        self.webhook_timeout = webhook_timeout
        #: Every webhook attempt: dicts with event, status (or error), delivery id.
        self.webhook_log: list[dict[str, Any]] = []
        self._webhooks: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._session = requests.Session()
        self._pending = 0
        self._pending_cv = threading.Condition()
        self.emulator.listeners.append(self._enqueue_webhook)
        self.emulator.wants_events = lambda: bool(self.emulator.webhook_url) or len(
            self.emulator.listeners
        ) > 1

    # -- settings the tests read --------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def inbox_identifier(self) -> str:
        return self.emulator.inbox_identifier

    @property
    def bot_token(self) -> str:
        return self.emulator.bot.access_token

    @property
    def user_token(self) -> str:
        return self.emulator.user_token

    @property
    def account_id(self) -> int:
        return int(str(self.emulator.account["id"]))

    @property
    def faults(self) -> Faults:
        return self.emulator.faults

    @property
    def webhook_url(self) -> str | None:
        return self.emulator.webhook_url

    @webhook_url.setter
    def webhook_url(self, value: str | None) -> None:
        self.emulator.webhook_url = value

    def env(self) -> dict[str, str]:
        """CHATWOOT_* settings that point chatwoot-mirror at this fake."""
        values = {
            "CHATWOOT_URL": self.url,
            "CHATWOOT_INBOX_ID": self.inbox_identifier,
            "CHATWOOT_ACCOUNT_ID": str(self.account_id),
            "CHATWOOT_BOT_TOKEN": self.bot_token,
        }
        if self.emulator.webhook_secret:
            values["CHATWOOT_WEBHOOK_SECRET"] = self.emulator.webhook_secret
        return values

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeChatwoot:
        self._stopping = False
        self._server = _Server((self.host, self.port), _Handler)
        self._server.emulator = self.emulator
        self.port = self._server.server_address[1]
        serve = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                 name="fake-chatwoot", daemon=True)
        hooks = threading.Thread(target=self._send_webhooks, name="fake-chatwoot-webhooks",
                                 daemon=True)
        self._threads = [serve, hooks]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._stopping = True  # webhooks still queued are dropped, not sent
        self._webhooks.put(None)
        # one bound for all: a webhook mid-post (its own timeout is longer) is abandoned
        # with its daemon thread, so stopping takes at most STOP_SECONDS
        deadline = time.monotonic() + STOP_SECONDS
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._server = None
        self._session.close()

    def __enter__(self) -> FakeChatwoot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- webhooks -----------------------------------------------------------------------------

    def _enqueue_webhook(self, event: str, payload: dict[str, Any]) -> None:
        if event not in INBOX_EVENTS or not self.emulator.webhook_url:
            return
        with self._pending_cv:
            self._pending += 1
        self._webhooks.put((event, payload))

    def _send_webhooks(self) -> None:
        while True:
            item = self._webhooks.get()
            if item is None:
                return
            batch = [item]
            if self.shuffle_webhooks:
                time.sleep(0.01)  # let a few queue up, then deliver them in any order
                while True:
                    try:
                        more = self._webhooks.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._webhooks.put(None)
                        break
                    batch.append(more)
                random.shuffle(batch)
            for event, payload in batch:
                try:
                    if not self._stopping:
                        self._deliver(event, payload)
                finally:
                    with self._pending_cv:
                        self._pending -= 1
                        self._pending_cv.notify_all()

    def _deliver(self, event: str, payload: dict[str, Any]) -> None:
        url = self.emulator.webhook_url
        if not url:
            return
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        rules = self.emulator.behaviour
        delivery = str(uuid.uuid4())
        if rules.delivery_header:
            headers["X-Chatwoot-Delivery"] = delivery
        secret = self.emulator.webhook_secret
        if secret and rules.signs_webhooks:
            stamp = str(int(time.time()))
            digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
            headers["X-Chatwoot-Timestamp"] = stamp
            headers["X-Chatwoot-Signature"] = f"sha256={digest.hexdigest()}"
        entry: dict[str, Any] = {"event": event, "delivery": headers.get("X-Chatwoot-Delivery")}
        error = None
        try:
            response = self._session.post(url, data=body, headers=headers,
                                          timeout=self.webhook_timeout)
            entry["status"] = response.status_code
            if not 200 <= response.status_code < 300:
                error = f"{response.status_code} {response.reason}"
        except requests.RequestException as exc:
            error = type(exc).__name__
            entry["error"] = error
        self.webhook_log.append(entry)
        # A failed (or > 5 s) webhook of a customer's message: Chatwoot opens the pending
        # conversation "due to an error with the agent bot" (lib/webhooks/trigger.rb).
        if error and event == "message_created" and payload.get("message_type") == "incoming":
            conversation = payload.get("conversation") or {}
            if isinstance(conversation.get("id"), int):
                self.emulator.open_on_bot_error(conversation["id"])
        # API-inbox webhooks are never retried; a failed message event marks its message
        # failed, whoever wrote it (a failure changing nothing sends no further event)
        if error and event in ("message_created", "message_updated") \
                and isinstance(payload.get("id"), int):
            self.emulator.mark_failed(payload["id"], error)

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """Block until every webhook queued so far has been attempted."""
        deadline = time.monotonic() + timeout
        with self._pending_cv:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._pending_cv.wait(left)
        return True

    # -- agent actions and inspection (delegated) ---------------------------------------------

    def agent_reply(self, conversation_id: int, text: str, **kwargs: Any) -> dict[str, Any]:
        msg = self.emulator.agent_reply(conversation_id, text, **kwargs)
        return self.emulator._message_app(msg)

    def private_note(self, conversation_id: int, text: str, **kwargs: Any) -> dict[str, Any]:
        return self.emulator._message_app(self.emulator.private_note(conversation_id, text,
                                                                     **kwargs))

    def template_message(self, conversation_id: int, text: str) -> dict[str, Any]:
        return self.emulator._message_app(self.emulator.template_message(conversation_id, text))

    def assign(self, conversation_id: int, agent_id: int = 3) -> None:
        self.emulator.assign(conversation_id, agent_id)

    def unassign(self, conversation_id: int) -> None:
        self.emulator.unassign(conversation_id)

    def set_status(self, conversation_id: int, status: str) -> None:
        self.emulator.set_status(conversation_id, status)

    def resolve(self, conversation_id: int) -> None:
        self.emulator.resolve(conversation_id)

    def delete_contact(self, contact_id: int) -> None:
        self.emulator.delete_contact(contact_id)

    def merge_contacts(self, base_id: int, mergee_id: int) -> None:
        self.emulator.merge_contacts(base_id, mergee_id)

    def contacts(self) -> list[dict[str, Any]]:
        with self.emulator.lock:
            return [
                {**c.record(), "source_ids": [ci.source_id for ci in
                                              self.emulator.contact_inboxes.values()
                                              if ci.contact_id == c.id]}
                for c in self.emulator.contacts.values()
            ]

    def conversations(self) -> list[dict[str, Any]]:
        with self.emulator.lock:
            return [self.emulator._conversation_webhook(c)
                    for c in sorted(self.emulator.conversations.values(), key=lambda c: c.id)]

    def messages(self, conversation_id: int | None = None) -> list[dict[str, Any]]:
        with self.emulator.lock:
            return [self.emulator._message_app(m) for m in self.emulator.messages
                    if conversation_id is None or m.conversation_id == conversation_id]

    def blob(self, data_url: str) -> dict[str, Any]:
        """What Chatwoot stored for an uploaded attachment (``filename``, ``content_type``,
        ``byte_size``), which its JSON does not show; KeyError for an unknown URL."""
        return self.emulator.blob(data_url)

    def upload(self, data: bytes, filename: str, content_type: str, *,
               ready_after: float = 0.0) -> dict[str, Any]:
        """An agent's file for :meth:`agent_reply` (``attachments=[cw.upload(...)]``),
        served at its ``data_url``; 404 for ``ready_after`` seconds (a direct upload
        still under way)."""
        return self.emulator.upload(data, filename, content_type, ready_after=ready_after)

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request received."""
        return list(self.emulator.request_log)
