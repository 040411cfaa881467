"""A small Chatwoot stand-in for ``responses``: enough state to check what Chatwoot receives.

Responses are built from the contract files, so the shapes are Chatwoot's own. Rules kept:
idempotent contact create by source_id, a new conversation on every POST (unless
``lock_to_single_conversation``), unordered conversation lists, incoming-only public messages.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from typing import Any

import responses
from conftest import contract

BASE = "https://chat.example.com"
INBOX = "Hk2uR9bWq7mZcX4tYp1sLe8D"
ACCOUNT = 1
BOT_TOKEN = "bot-token-SECRET-123"

PUBLIC = re.compile(
    rf"{re.escape(BASE)}/public/api/v1/inboxes/{INBOX}(?P<rest>/.*)?$"
)
APP = re.compile(rf"{re.escape(BASE)}/api/v1/accounts/{ACCOUNT}(?P<rest>/.*)$")


class FakeChatwoot:
    def __init__(
        self, rsps: responses.RequestsMock, *, lock_to_single: bool = False, latency: float = 0.0
    ) -> None:
        self.lock_to_single = lock_to_single
        self.latency = latency
        self.contacts: dict[str, dict[str, Any]] = {}
        self.conversations: dict[int, dict[str, Any]] = {}
        self.messages: list[dict[str, Any]] = []
        self.next_conversation = 128
        self.next_message = 9001
        self.next_contact = 42
        self.lock = threading.Lock()
        self.fail_next: list[tuple[str, int, Any]] = []  # (operation regex, status, body)
        for method in ("GET", "POST", "PATCH"):
            rsps.add_callback(method, PUBLIC, callback=self._public)
            rsps.add_callback(method, APP, callback=self._app)
        self.rsps = rsps

    # -- helpers --------------------------------------------------------------------------
    def calls(self) -> list[tuple[str, str]]:
        return [(c.request.method, _path(c.request.url)) for c in self.rsps.calls]

    def _injected(self, method: str, path: str):
        for i, (pattern, status, body) in enumerate(self.fail_next):
            if re.search(pattern, f"{method} {path}"):
                del self.fail_next[i]
                return (status, {}, json.dumps(body) if not isinstance(body, str) else body)
        return None

    # -- public API -----------------------------------------------------------------------
    def _public(self, request):
        rest = PUBLIC.match(request.url.split("?")[0]).group("rest") or ""
        injected = self._injected(request.method, rest)
        if injected:
            return injected
        if self.latency:
            time.sleep(self.latency)  # widens the window in which races would show
        with self.lock:
            return self._public_locked(request, rest)

    def _public_locked(self, request, rest):
        body = _json(request)
        if request.method == "POST" and rest == "/contacts":
            source_id = body.get("source_id") or f"uuid-{random.random()}"
            if source_id not in self.contacts:
                data = contract("chatwoot/public_api/contact_create_response.json")
                data.update(
                    source_id=source_id,
                    id=self.next_contact,
                    name=body.get("name") or "random-haiku",
                    phone_number=body.get("phone_number"),
                )
                self.next_contact += 1
                self.contacts[source_id] = data
            return 200, {}, json.dumps(self.contacts[source_id])
        m = re.match(r"^/contacts/([^/]+)/conversations$", rest)
        if m:
            source_id = m.group(1)
            if source_id not in self.contacts:
                return 404, {}, json.dumps({"status": 404, "error": "Not Found"})
            mine = [c for c in self.conversations.values() if c["source_id"] == source_id]
            if request.method == "GET":
                random.shuffle(mine)  # Chatwoot's list has no ORDER BY
                return 200, {}, json.dumps([self._conv_json(c) for c in mine])
            if self.lock_to_single and mine:
                return 200, {}, json.dumps(self._conv_json(max(mine, key=lambda c: c["id"])))
            conv = {"id": self.next_conversation, "source_id": source_id, "status": "open"}
            self.next_conversation += 1
            self.conversations[conv["id"]] = conv
            return 200, {}, json.dumps(self._conv_json(conv))
        m = re.match(r"^/contacts/([^/]+)/conversations/(\d+)$", rest)
        if m and request.method == "GET":  # contact-scoped: 404 for another's conversation
            conv = self.conversations.get(int(m.group(2)))
            if m.group(1) not in self.contacts or not conv or conv["source_id"] != m.group(1):
                return 404, {}, json.dumps({"status": 404, "error": "Not Found"})
            return 200, {}, json.dumps(self._conv_json(conv))
        m = re.match(r"^/contacts/([^/]+)/conversations/(\d+)/messages$", rest)
        if m and request.method == "POST":
            source_id, conv_id = m.group(1), int(m.group(2))
            conv = self.conversations.get(conv_id)
            if source_id not in self.contacts or not conv or conv["source_id"] != source_id:
                return 404, {}, json.dumps({"status": 404, "error": "Not Found"})
            if conv["status"] == "resolved":
                conv["status"] = "open"  # Chatwoot reopens on an incoming message
            content = body.get("content") if body else _form_field(request, "content")
            return 200, {}, json.dumps(self._add_message(conv_id, content, 0, None, {}))
        return 404, {}, json.dumps({"status": 404, "error": "Not Found"})

    def _conv_json(self, conv):
        data = contract("chatwoot/public_api/conversation_create_response.json")
        data.update(id=conv["id"], status=conv["status"], messages=[])
        return data

    def _add_message(self, conv_id, content, message_type, source_id, attrs):
        data = contract("chatwoot/public_api/message_create_response.json")
        data.update(
            id=self.next_message,
            content=content,
            message_type=message_type,
            conversation_id=conv_id,
            content_attributes=attrs or {},
        )
        if source_id is not None:
            data["source_id"] = source_id
        self.next_message += 1
        self.messages.append(data)
        return data

    # -- Application API ------------------------------------------------------------------
    def _app(self, request):
        rest = APP.match(request.url.split("?")[0]).group("rest")
        injected = self._injected(request.method, rest)
        if injected:
            return injected
        token = request.headers.get("api_access_token")
        if token != BOT_TOKEN:
            return 401, {}, _err("error_invalid_token_401.json")
        m = re.match(r"^/conversations/(\d+)/messages$", rest)
        if m and request.method == "POST":
            conv_id = int(m.group(1))
            if conv_id not in self.conversations:
                return 404, {}, _err("error_not_found_404.json")
            body = _json(request)
            with self.lock:
                kind = {"incoming": 0, "outgoing": 1}[body.get("message_type", "outgoing")]
                if kind == 0 and self.conversations[conv_id]["status"] == "resolved":
                    self.conversations[conv_id]["status"] = "open"
                data = self._add_message(
                    conv_id, body["content"], kind, body.get("source_id"),
                    body.get("content_attributes"),
                )
            reply = contract("chatwoot/application_api/message_create_response_agent_bot.json")
            reply.update({k: data[k] for k in ("id", "content", "conversation_id", "message_type",
                                               "content_attributes")})
            reply["source_id"] = body.get("source_id")
            return 200, {}, json.dumps(reply)
        return 401, {}, _err("error_bot_not_allowed_401.json")


def _path(url: str) -> str:
    path = url.split("://", 1)[1].split("/", 1)[1]
    return "/" + path.split("?")[0]


def _json(request) -> dict[str, Any]:
    if not request.body:
        return {}
    body = request.body
    if isinstance(body, bytes):
        try:
            return json.loads(body)
        except ValueError:
            return {}
    try:
        return json.loads(body)
    except ValueError:
        return {}


def _form_field(request, name: str) -> str | None:
    body = request.body if isinstance(request.body, bytes) else request.body.encode()
    m = re.search(rb'name="' + name.encode() + rb'"\r\n\r\n(.*?)\r\n--', body, re.S)
    return m.group(1).decode() if m else None


def _err(name: str) -> str:
    return json.dumps(contract(f"chatwoot/application_api/{name}"))
