"""Chatwoot's rules, framework-neutral: ``Emulator.handle(request) -> Reply``.

Each rule is Chatwoot's own behaviour as read from its source (``research/chatwoot.md``):
idempotent contact create by ``source_id`` (a random UUID without one), unordered
conversation lists with resolved ones, ``lock_to_single_conversation``, ``pending``
under an active bot, reopen on incoming, incoming-only public messages, AgentBot tokens
limited to the bot endpoints, E.164 and 150 000-character 422s, the 200 messages/minute
flood 422, an optional global ``429 Retry later``, and the 500 on a bad HMAC.
"""

from __future__ import annotations

import re
import time
from typing import Any

from .application_api import ApplicationApi
from .models import store_blob
from .public_api import PublicApi
from .state import Message
from .wire import (
    BOT_REFUSED,
    HMAC_FAILED,
    NOT_FOUND_APP,
    NOT_FOUND_PUBLIC,
    ApiError,
    Faults,
    Reply,
    Request,
)

__all__ = ["BOT_ERROR_ACTIVITY", "ApiError", "Emulator", "Faults", "Reply", "Request"]

#: ``conversations.activity.agent_bot.error_moved_to_open`` (Chatwoot's config/locales/en.yml)
BOT_ERROR_ACTIVITY = "Conversation was marked open by system due to an error with the agent bot."


class Emulator(PublicApi, ApplicationApi):
    """One emulated Chatwoot account with one API inbox: the entry point that answers a
    request (faults first, then the route), and what people do in the dashboard. The
    state is ``state.Account``; the rules are in ``models``, ``webhooks``, ``public_api``
    and ``application_api``, each where Chatwoot keeps them."""

    def handle(self, request: Request) -> Reply:
        """Answer one HTTP request as Chatwoot would (faults included)."""
        faults = self.faults
        if faults.latency or faults.latency_jitter:
            time.sleep(faults.latency + self.random.random() * faults.latency_jitter)
        now = time.time()
        with self.lock:
            if faults.outage or any(a <= now < b for a, b in faults.outages):
                return self._log(request, Reply(faults.outage_status, {"error": "unavailable"}))
            if faults.rate_limit_per_minute is not None:
                while self._rate_window and self._rate_window[0] < now - faults.rate_limit_window:
                    self._rate_window.popleft()
                if len(self._rate_window) >= faults.rate_limit_per_minute:
                    # rack-attack's default throttled responder, byte for byte
                    return self._log(request, Reply(429, "Retry later\n", "text/plain"))
                self._rate_window.append(now)
            if faults.error_rate and self.random.random() < faults.error_rate:
                return self._log(request, Reply(faults.error_status, HMAC_FAILED))
            drop = bool(
                faults.drop_after_commit_rate
                and self.random.random() < faults.drop_after_commit_rate
            )
            try:
                reply = self._route(request)
            except ApiError as exc:
                reply = exc.reply
            if drop and reply.status < 300:
                reply.drop = True
            return self._log(request, reply)

    def _log(self, request: Request, reply: Reply) -> Reply:
        self.request_log.append((request.method, request.path, reply.status))
        return reply

    def _route(self, r: Request) -> Reply:
        path = r.path.rstrip("/") or "/"
        if path.startswith("/rails/active_storage/") and r.method == "GET":
            return self._blob(path)
        m = re.match(r"^/public/api/v1/inboxes/([^/]+)(/.*)?$", path)
        if m:
            if m.group(1) != self.inbox_identifier:
                raise ApiError(404, NOT_FOUND_PUBLIC)
            return self._public(r, m.group(2) or "")
        m = re.match(r"^/api/v1/accounts/(\d+)(/.*)?$", path)
        if m:
            return self._application(r, int(m.group(1)), m.group(2) or "")
        if path.startswith("/api/"):
            # Api::BaseController authenticates before any action runs: a real route we
            # do not model (/api/v1/profile...) answers a bad token with 401, as Chatwoot
            # does, and a bot token with the bots' 401
            if self._who(r) == "bot":
                raise ApiError(401, BOT_REFUSED)
            raise ApiError(404, NOT_FOUND_APP)
        raise ApiError(404, NOT_FOUND_PUBLIC)

    def _blob(self, path: str) -> Reply:
        """A stored file, by its ``data_url`` (the real one redirects to its storage
        service first; what a fetcher gets at the end is the same)."""
        blob = self.blobs.get(path)
        if blob is None or time.time() < blob["_ready_at"]:
            return Reply(404, "Not Found", "text/plain")
        return Reply(200, blob["_data"], blob["content_type"])

    def blob(self, data_url: str) -> dict[str, Any]:
        """What ActiveStorage keeps of an upload and Chatwoot's JSON does not show
        (``filename``, ``content_type``, ``byte_size``); KeyError for an unknown URL."""
        with self.lock:
            record = self.blobs[data_url.partition("?")[0]]
            return {k: v for k, v in record.items() if not k.startswith("_")}

    def upload(self, data: bytes, filename: str, content_type: str, *,
               ready_after: float = 0.0) -> dict[str, Any]:
        """A file an agent attached in the dashboard, for :meth:`agent_reply`'s
        ``attachments``; ``ready_after`` seconds pass before it can be fetched (an S3
        direct upload finishing after the webhook)."""
        with self.lock:
            return store_blob(self.blobs, data, filename, content_type, self.behaviour,
                              time.time() + ready_after)

    def agent_reply(
        self,
        conversation_id: int,
        text: str,
        *,
        agent_id: int = 3,
        attachments: list[dict[str, Any]] | None = None,
        in_reply_to: int | None = None,
    ) -> Message:
        """An agent's reply from the dashboard; ``in_reply_to``: the message it quotes
        (the dashboard's "reply to"), resolved as Chatwoot resolves it."""
        with self.lock:
            conv = self._conversation(conversation_id)
            attrs = {} if in_reply_to is None else self._in_reply_to(
                conv, {"in_reply_to": in_reply_to})
            return self._create_message(conv, text, "outgoing", ("User", agent_id),
                                        attachments=attachments, content_attributes=attrs)

    def private_note(self, conversation_id: int, text: str, *, agent_id: int = 3) -> Message:
        with self.lock:
            conv = self._conversation(conversation_id)
            return self._create_message(conv, text, "outgoing", ("User", agent_id), private=True)

    def template_message(self, conversation_id: int, text: str) -> Message:
        """A message Chatwoot writes itself (greeting, out of office): ``sender`` is null."""
        with self.lock:
            conv = self._conversation(conversation_id)
            return self._create_message(conv, text, "template", (None, None))

    def assign(self, conversation_id: int, agent_id: int = 3) -> None:
        with self.lock:
            self._assign(self._conversation(conversation_id), agent_id)

    def unassign(self, conversation_id: int) -> None:
        with self.lock:
            self._assign(self._conversation(conversation_id), None)

    def set_status(self, conversation_id: int, status: str) -> None:
        with self.lock:
            conv = self._conversation(conversation_id)
            self._save(conv, status=status,
                       **({"assignee_agent_bot_id": None} if status == "open" else {}))

    def resolve(self, conversation_id: int) -> None:
        self.set_status(conversation_id, "resolved")

    def open_on_bot_error(self, conversation_id: int) -> bool:
        """What Chatwoot (>= 4.7, ``Webhooks::Trigger#update_conversation_status``) does when
        its webhook to the bot fails or takes longer than 5 s: a pending conversation is
        opened, unless the account keeps it pending, with the activity message
        ``conversations.activity.agent_bot.error_moved_to_open``. True when it opened."""
        with self.lock:
            conv = self._conversation(conversation_id)
            if conv.status != "pending" or self.keep_pending_on_bot_failure:
                return False
            self._set_status(conv, "open")
            self._create_message(conv, BOT_ERROR_ACTIVITY, "activity", (None, None))
            return True

    def mark_failed(self, message_id: int, error: str) -> bool:
        """What Chatwoot does when the API-inbox webhook of a ``message_created`` or
        ``message_updated`` fails (lib/webhooks/trigger.rb): the message, whoever wrote it,
        is marked failed with the error's text. True when that changed it."""
        with self.lock:
            msg = next((m for m in self.messages if m.id == message_id), None)
            return msg is not None and self._update_status(msg, "failed", error)

    def delete_contact(self, contact_id: int) -> None:
        """An agent deletes a contact: its contact inboxes, conversations and messages go
        with it (Chatwoot's ``dependent: :destroy_async``). Display ids are not reused."""
        with self.lock:
            if self.contacts.pop(int(contact_id), None) is None:
                raise KeyError(f"no contact {contact_id}")
            for source_id, ci in list(self.contact_inboxes.items()):
                if ci.contact_id == int(contact_id):
                    del self.contact_inboxes[source_id]
            for conv in [c for c in self.conversations.values()
                         if c.contact_inbox.contact_id == int(contact_id)]:
                del self.conversations[conv.id]
                gone = self._by_conversation.pop(conv.id, [])
                self.messages = [m for m in self.messages if m not in gone]

    def conversation_messages(self, conversation_id: int) -> list[dict[str, Any]]:
        """Every message of a conversation (private ones included), Application-API form."""
        with self.lock:
            return [self._message_app(m) for m in self.messages
                    if m.conversation_id == int(conversation_id)]
