"""Calls into ``Emulator.handle`` as a client makes them, and the webhook events the
emulator emits, for the tests that check a Chatwoot rule (no HTTP server in between)."""

from __future__ import annotations

import json
from typing import Any

from chatwoot_mirror.testing import Emulator
from chatwoot_mirror.testing.emulator import Request


class Chatwoot:
    """An emulator, its events, and the calls a client makes."""

    def __init__(self, **options: Any) -> None:
        self.emulator = Emulator(**options)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.emulator.listeners.append(lambda name, payload: self.events.append((name, payload)))

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = None,
             headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            hdrs["api_access_token"] = token
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        path, _, query = path.partition("?")
        reply = self.emulator.handle(Request(method, path, query, hdrs, data))
        raw_body = reply.encoded()
        try:
            return reply.status, json.loads(raw_body) if raw_body else None
        except ValueError:
            return reply.status, raw_body.decode()

    def public(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self.call(method, f"/public/api/v1/inboxes/{self.emulator.inbox_identifier}{path}",
                         body)

    def app(self, method: str, path: str, body: Any = None, *, bot: bool = True):
        token = self.emulator.bot.access_token if bot else self.emulator.user_token
        return self.call(method, f"/api/v1/accounts/1{path}", body, token=token)

    def contact(self, source_id: str = "wa-1", **extra: Any) -> dict[str, Any]:
        status, body = self.public("POST", "/contacts", {"source_id": source_id, **extra})
        assert status == 200, body
        return body

    def conversation(self, source_id: str = "wa-1") -> int:
        status, body = self.public("POST", f"/contacts/{source_id}/conversations", {})
        assert status == 200, body
        return int(body["id"])

    def incoming(self, conv: int, text: str, source_id: str = "wa-1") -> None:
        status, _ = self.public("POST", f"/contacts/{source_id}/conversations/{conv}/messages",
                                {"content": text})
        assert status == 200

    def upload(self, conv: int, *files: tuple[str, str], content: str = "arquivos"
               ) -> dict[str, Any]:
        """A bot's message with ``files`` ((name, content type) pairs, each holding
        ``DATA``) as multipart; the answer of a 200."""
        boundary = "b0undary"
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="attachments[]"; '
                 f'filename="{name}"\r\nContent-Type: {ctype}\r\n\r\nDATA\r\n'
                 for name, ctype in files]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"'
                     f'\r\n\r\n{content}\r\n--{boundary}--\r\n')
        status, body = self.call(
            "POST", f"/api/v1/accounts/1/conversations/{conv}/messages",
            token=self.emulator.bot.access_token, raw="".join(parts).encode(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert status == 200, body
        return body

    def updates(self) -> list[list[dict[str, Any]]]:
        """changed_attributes of every conversation_updated, oldest first."""
        return [p["changed_attributes"] for n, p in self.events if n == "conversation_updated"]

    def drain(self) -> None:
        self.events.clear()


def changed_keys(update: list[dict[str, Any]]) -> set[str]:
    return {key for item in update for key in item}
