"""Chatwoot's rules, framework-neutral: ``Emulator.handle(request) -> Reply``.

Each rule is Chatwoot's own behaviour as read from its source (``research/chatwoot.md``):
idempotent contact create by ``source_id`` (a random UUID without one), unordered
conversation lists with resolved ones, ``lock_to_single_conversation``, ``pending``
under an active bot, reopen on incoming, incoming-only public messages, AgentBot tokens
limited to the bot endpoints, E.164 and 150 000-character 422s, the 200 messages/minute
flood 422, an optional global ``429 Retry later``, and the 500 on a bad HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qs, quote

from .multipart import parse_form
from .state import (
    MESSAGE_TYPE_NAMES,
    MESSAGE_TYPES,
    Agent,
    Bot,
    Contact,
    ContactInbox,
    Conversation,
    Message,
    iso,
    token,
)
from .versions import DEFAULT_VERSION, behaviour

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
#: Devise.email_regexp, which app/models/contact.rb validates emails with
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
MAX_CONTENT = 150_000
HAIKU = ["morning-river", "silent-leaf", "bold-sun", "quiet-hill", "young-moon", "wild-sea"]

#: app/helpers/file_type_helper.rb: only these are images or videos; any audio/* is audio
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/bmp", "image/webp"})
VIDEO_TYPES = frozenset({"video/ogg", "video/mp4", "video/webm", "video/quicktime"})
#: app/models/jsonb_attributes_length_validator.rb
MAX_ATTRIBUTE_TEXT = 1500
MAX_ATTRIBUTE_NUMBER = 9_999_999_999
#: Conversation column -> the emulator's field, where the names differ
_FIELDS = {"label_list": "labels"}
#: columns whose values conversation_updated reports as ISO times
_TIMES = frozenset({"snoozed_until", "waiting_since", "first_reply_created_at"})

#: Message.content_types (app/models/message.rb)
CONTENT_TYPES = frozenset({"text", "input_text", "input_textarea", "input_email", "input_select",
                           "cards", "form", "article", "incoming_email", "input_csat",
                           "integrations", "sticker", "voice_call"})
NOT_FOUND_PUBLIC = {"status": 404, "error": "Not Found"}
NOT_FOUND_APP = {"error": "Resource could not be found"}
BOT_REFUSED = {"error": "Access to this endpoint is not authorized for bots"}
HMAC_FAILED = {"status": 500, "error": "Internal Server Error"}
#: the agent whose access token ``user_token`` is (Ana, role agent)
USER_ID = 3


@dataclass
class Request:
    method: str
    path: str
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers.items():
            if key.lower() == name:
                return value
        return None


@dataclass
class Reply:
    status: int
    body: Any = None
    content_type: str = "application/json"
    drop: bool = False  # commit, then close the connection without answering

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, (bytes, str)):
            return self.body if isinstance(self.body, bytes) else self.body.encode()
        return json.dumps(self.body).encode()


#: ``conversations.activity.agent_bot.error_moved_to_open`` (Chatwoot's config/locales/en.yml)
BOT_ERROR_ACTIVITY = "Conversation was marked open by system due to an error with the agent bot."


@dataclass
class Faults:
    """Fault injection. Rates are probabilities per request; ``outages`` are
    ``(start, end)`` wall-clock windows during which every request gets ``outage_status``."""

    latency: float = 0.0
    latency_jitter: float = 0.0
    error_rate: float = 0.0
    error_status: int = 500
    drop_after_commit_rate: float = 0.0
    outage: bool = False
    outage_status: int = 503
    outages: list[tuple[float, float]] = field(default_factory=list)
    rate_limit_per_minute: int | None = None
    #: the rate limit's window in seconds (rack-attack's is a minute; shorter for tests)
    rate_limit_window: float = 60.0
    seed: int | None = None


class ApiError(Exception):
    def __init__(self, status: int, body: Any, content_type: str = "application/json"):
        self.reply = Reply(status, body, content_type)


class Emulator:
    """All state and rules of one emulated Chatwoot account with one API inbox."""

    def __init__(
        self,
        *,
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
        faults: Faults | None = None,
        chatwoot_version: str = DEFAULT_VERSION,
    ) -> None:
        self.lock = threading.RLock()
        #: the version-dependent rules (testing/versions.py); 4.16.2 unless told otherwise
        self.behaviour = behaviour(chatwoot_version)
        self.account = {"id": 1, "name": "Acme Suporte"}
        self.inbox_id = 7
        self.inbox_name = "WhatsApp Bot (API)"
        self.inbox_identifier = inbox_identifier or token()
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.lock_to_single_conversation = lock_to_single_conversation
        self.bot_active = bot_active
        self.hmac_token = hmac_token or token()
        self.hmac_mandatory = hmac_mandatory
        self.flood_limit = flood_limit
        self.flood_window = flood_window
        self.faults = faults or Faults()
        self.random = random.Random(self.faults.seed)
        #: the account setting (v4.11+) that leaves conversations pending on bot errors
        self.keep_pending_on_bot_failure = False
        self.bot = Bot(5, "chatwoot-mirror bot", bot_token or token())
        self.user_token = user_token or token()
        self.agents = {
            3: Agent(3, "Ana Agente", "ana@acme.example"),
            4: Agent(4, "Bruno Atendente", "bruno@acme.example", availability_status="offline"),
        }
        self.contacts: dict[int, Contact] = {}
        self.contact_inboxes: dict[str, ContactInbox] = {}
        self.conversations: dict[int, Conversation] = {}
        self.messages: list[Message] = []
        self._by_conversation: dict[int, list[Message]] = {}
        #: ActiveStorage's blobs by data_url: filename, content_type, byte_size
        self.blobs: dict[str, dict[str, Any]] = {}
        self.request_log: list[tuple[str, str, int]] = []
        self._ids = {"contact": 41, "contact_inbox": 310, "conversation": 127, "message": 9000}
        self._rate_window: deque[float] = deque()
        #: Listeners get ``(event_name, payload)`` for every webhook event (the server sends them).
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        #: Payloads are only built when this says someone will read them.
        self.wants_events: Callable[[], bool] = lambda: bool(self.listeners)

    # -- ids, events -------------------------------------------------------------------------

    def _next(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def _emit(self, event: str, build: Callable[[], dict[str, Any]]) -> None:
        if not self.wants_events():
            return
        payload = {**build(), "event": event}
        for listener in list(self.listeners):
            listener(event, payload)

    # -- entry point -------------------------------------------------------------------------

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
            return {k: v for k, v in self.blobs[data_url].items() if not k.startswith("_")}

    def upload(self, data: bytes, filename: str, content_type: str, *,
               ready_after: float = 0.0) -> dict[str, Any]:
        """A file an agent attached in the dashboard, for :meth:`agent_reply`'s
        ``attachments``; ``ready_after`` seconds pass before it can be fetched (an S3
        direct upload finishing after the webhook)."""
        with self.lock:
            return _store_blob(self.blobs, data, filename, content_type,
                               time.time() + ready_after)

    # -- public client API ------------------------------------------------------------------

    def _public(self, r: Request, rest: str) -> Reply:
        body = _body(r)
        if rest == "" and r.method == "GET":
            return Reply(200, self._inbox_public())
        if rest == "/contacts" and r.method == "POST":
            return Reply(200, self._contact_create(body))
        m = re.match(r"^/contacts/([^/]+)(/.*)?$", rest)
        if not m:
            raise ApiError(404, NOT_FOUND_PUBLIC)
        source_id, sub = m.group(1), m.group(2) or ""
        if sub == "":
            if r.method == "GET":
                ci = self._contact_inbox(source_id)
                self._check_hmac(body or _query(r), ci)
                return Reply(200, self._contact_json(ci))
            if r.method in ("PATCH", "PUT"):
                ci = self._contact_inbox(source_id)
                self._check_hmac(body, ci)
                return Reply(200, self._contact_update(ci, body))
            raise ApiError(404, NOT_FOUND_PUBLIC)
        ci = self._contact_inbox(source_id)
        if sub == "/conversations":
            if r.method == "GET":
                convs = self._visible_conversations(ci)
                self.random.shuffle(convs)  # Chatwoot's index has no ORDER BY
                return Reply(200, [self._conversation_public(c) for c in convs])
            if r.method == "POST":
                return Reply(200, self._conversation_public(self._conversation_create(ci, body)))
        m = re.match(r"^/conversations/(\d+)(/.*)?$", sub)
        if not m:
            raise ApiError(404, NOT_FOUND_PUBLIC)
        action = m.group(2) or ""
        conv = self.conversations.get(int(m.group(1)))
        # ConversationsController#set_conversation looks among the conversations the index
        # shows; the messages controller (InboxesController#set_conversation) among all of
        # the contact's
        visible = (self._contact_conversations(ci.contact_id) if action == "/messages"
                   else self._visible_conversations(ci))
        if conv is None or conv not in visible:
            raise ApiError(404, NOT_FOUND_PUBLIC)
        if action == "" and r.method == "GET":
            return Reply(200, self._conversation_public(conv))
        if action == "/toggle_status" and r.method == "POST":
            if conv.status != "resolved":
                self._set_status(conv, "resolved")
            return Reply(200, self._conversation_public(conv))
        if action == "/toggle_typing" and r.method == "POST":
            state = body.get("typing_status")
            if state in ("on", "off"):
                contact = self.contacts[ci.contact_id]
                self._emit(f"conversation_typing_{state}", lambda: {
                    "user": contact.webhook(self.account),
                    "conversation": self._conversation_webhook(conv),
                    "is_private": False,
                })
            return Reply(200, None)
        if action == "/update_last_seen" and r.method == "POST":
            conv.contact_last_seen_at = time.time()
            for msg in self._messages_of(conv):
                if msg.message_type != 0 and msg.status in ("sent", "delivered"):
                    msg.status = "read"
                    self._emit("message_updated", partial(self._message_webhook, msg))
            return Reply(200, None)
        if action == "/messages":
            if r.method == "GET":
                before = _query(r).get("before")
                return Reply(200, self._messages_index(conv, int(before) if before else None))
            if r.method == "POST":
                content, files = _content_and_files(r, body, self.blobs)
                msg = self._create_message(
                    conv, content, "incoming", ("Contact", ci.contact_id), attachments=files
                )
                return Reply(200, self._message_public(msg))
        raise ApiError(404, NOT_FOUND_PUBLIC)

    def _contact_conversations(self, contact_id: int) -> list[Conversation]:
        return [c for c in self.conversations.values() if c.contact_inbox.contact_id == contact_id]

    def _visible_conversations(self, ci: ContactInbox) -> list[Conversation]:
        """public/api/v1/inboxes/conversations_controller.rb#index: a contact inbox whose
        identity was verified (identifier_hash) sees all of its contact's conversations,
        through every contact inbox; any other only its own."""
        if ci.hmac_verified:
            return self._contact_conversations(ci.contact_id)
        return [c for c in self.conversations.values() if c.contact_inbox is ci]

    def _inbox_public(self) -> dict[str, Any]:
        closed = {"closed_all_day": True, "open_hour": None, "open_minutes": None,
                  "close_hour": None, "close_minutes": None, "open_all_day": False}
        open_ = {"closed_all_day": False, "open_hour": 9, "open_minutes": 0, "close_hour": 18,
                 "close_minutes": 0, "open_all_day": False}
        return {
            "identifier": self.inbox_identifier,
            "identity_validation_enabled": self.hmac_mandatory,
            "name": self.inbox_name,
            "timezone": "America/Sao_Paulo",
            "working_hours": [
                {"day_of_week": d, **(closed if d in (0, 6) else open_)} for d in range(7)
            ],
            "working_hours_enabled": False,
            "csat_survey_enabled": False,
            "greeting_enabled": False,
        }

    def _check_hmac(self, body: dict[str, Any], ci: ContactInbox | None = None) -> None:
        given = body.get("identifier_hash")
        if not given and not self.hmac_mandatory:
            return
        expected = hmac.new(
            self.hmac_token.encode(), str(body.get("identifier", "")).encode(), hashlib.sha256
        ).hexdigest()
        if not given or not hmac.compare_digest(str(given), expected):
            # Chatwoot raises a bare StandardError here, which nothing rescues.
            raise ApiError(500, HMAC_FAILED)
        if ci is not None:
            ci.hmac_verified = True

    def _contact_inbox(self, source_id: str) -> ContactInbox:
        ci = self.contact_inboxes.get(source_id)
        if ci is None or ci.contact_id not in self.contacts:
            raise ApiError(404, NOT_FOUND_PUBLIC)
        return ci

    def _contact_create(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_hmac(body)
        source_id = body.get("source_id") or str(uuid.uuid4())
        existing = self.contact_inboxes.get(str(source_id))
        if existing and existing.contact_id in self.contacts:
            return self._contact_json(existing)  # attributes are NOT updated
        phone = body.get("phone_number")
        if phone and not E164.match(str(phone)):
            raise ApiError(422, {"message": "Phone number should be in e164 format",
                                 "attributes": ["phone_number"]})
        email = _email(body.get("email"))
        contact = self._find_contact({**body, "email": email})
        if contact is None:
            contact = Contact(
                id=self._next("contact"),
                name=body.get("name") or self.random.choice(HAIKU),
                email=email,
                phone_number=phone,
                identifier=body.get("identifier"),
                custom_attributes=dict(body.get("custom_attributes") or {}),
            )
            self.contacts[contact.id] = contact
            self._emit("contact_created", lambda: contact.webhook(self.account))
        ci = ContactInbox(self._next("contact_inbox"), contact.id, self.inbox_id, str(source_id))
        self.contact_inboxes[ci.source_id] = ci
        return self._contact_json(ci)

    def _find_contact(self, body: dict[str, Any]) -> Contact | None:
        for attr in ("identifier", "email", "phone_number"):
            value = body.get(attr)
            if value:
                for contact in self.contacts.values():
                    if getattr(contact, attr) == value:
                        return contact
        return None

    def _contact_update(self, ci: ContactInbox, body: dict[str, Any]) -> dict[str, Any]:
        """``ContactsController#update`` runs ``ContactIdentifyAction`` (without
        ``identifier``): a contact of the account that already has the email or the phone
        number absorbs this one (its contact inboxes move there), then the rest is set."""
        contact = self.contacts[ci.contact_id]
        phone = body.get("phone_number")
        if phone and not E164.match(str(phone)):
            raise ApiError(422, {"message": "Phone number should be in e164 format",
                                 "attributes": ["phone_number"]})
        email = _email(body.get("email"))
        for attr, value in (("email", email), ("phone_number", phone)):
            if not value:
                continue
            other = next((c for c in self.contacts.values()
                          if c.id != contact.id and getattr(c, attr) == value), None)
            if other is not None:
                self.merge_contacts(other.id, contact.id)
                contact = other
        body = {**body, "email": email}
        for attr in ("name", "email", "phone_number"):
            if body.get(attr):
                setattr(contact, attr, body[attr])
        if isinstance(body.get("custom_attributes"), dict):
            contact.custom_attributes.update(body["custom_attributes"])
        contact.updated_at = time.time()
        return self._contact_json(ci)

    def _contact_json(self, ci: ContactInbox) -> dict[str, Any]:
        contact = self.contacts[ci.contact_id]
        return {
            "source_id": ci.source_id,
            "pubsub_token": ci.pubsub_token,
            "id": contact.id,
            "name": contact.name,
            "email": contact.email,
            "phone_number": contact.phone_number,
        }

    def _conversation_create(self, ci: ContactInbox, body: dict[str, Any]) -> Conversation:
        mine = [c for c in self.conversations.values() if c.contact_inbox is ci]
        if self.lock_to_single_conversation and mine:
            return max(mine, key=lambda c: c.id)  # whatever its status, resolved too
        contact = self.contacts[ci.contact_id]
        attributes = body.get("custom_attributes")
        attributes = dict(attributes) if isinstance(attributes, dict) else {}
        _check_attributes(attributes)
        status = "resolved" if contact.blocked else ("pending" if self.bot_active else "open")
        conv = Conversation.new(self._next("conversation"), ci, status)
        conv.waiting_since = conv.created_at  # Conversation#ensure_waiting_since
        if self.bot_active and self.behaviour.bot_assigned_at_creation:
            conv.assignee_agent_bot_id = self.bot.id
        conv.custom_attributes = attributes
        self.conversations[conv.id] = conv
        self._emit("conversation_created", lambda: self._conversation_webhook(conv))
        return conv

    # -- messages ---------------------------------------------------------------------------

    def _messages_of(self, conv: Conversation) -> list[Message]:
        return self._by_conversation.get(conv.id, [])

    def _create_message(
        self,
        conv: Conversation,
        content: str | None,
        message_type: str,
        sender: tuple[str | None, int | None],
        *,
        private: bool = False,
        source_id: str | None = None,
        content_attributes: dict[str, Any] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        content_type: str = "text",
    ) -> Message:
        if content is not None and len(content) > MAX_CONTENT:
            raise ApiError(422, {"message": "Content is too long (maximum is 150000 characters)",
                                 "attributes": ["content"]})
        now = time.time()
        recent = 0
        for m in reversed(self._messages_of(conv)):  # newest first: stop at the window
            if m.created_at <= now - self.flood_window:
                break
            recent += 1
        if recent >= self.flood_limit:
            # Message#prevent_message_flooding adds the error to :base
            raise ApiError(422, {"message": "Too many messages", "attributes": ["base"]})
        msg = Message(
            id=self._next("message"),
            conversation_id=conv.id,
            content=content,
            message_type=MESSAGE_TYPES[message_type],
            sender_type=sender[0],
            sender_id=sender[1],
            private=private,
            source_id=source_id,
            content_type=content_type,
            content_attributes=dict(content_attributes or {}),
            attachments=list(attachments or []),
        )
        for i, att in enumerate(msg.attachments):
            # app/models/attachment.rb#push_event_data: base data and file metadata
            att.setdefault("id", msg.id * 10 + i)
            att.setdefault("message_id", msg.id)
            att.setdefault("account_id", self.account["id"])
            att.setdefault("width", None)
            att.setdefault("height", None)
        self.messages.append(msg)
        self._by_conversation.setdefault(conv.id, []).append(msg)
        # Message#execute_after_create_commit_callbacks, in its order
        if msg.message_type == 0:
            self._reopen(conv)
        conv.last_activity_at = now
        self._emit("message_created", lambda: self._message_webhook(msg))
        self._waiting_time(conv, msg)
        return msg

    def _waiting_time(self, conv: Conversation, msg: Message) -> None:
        """Message#dispatch_create_events: the first human reply records itself and stops
        the waiting time (one save); a later human or bot reply stops it
        (clear_waiting_since_on_outgoing_response); a customer's message starts it when
        none runs. Private notes change nothing. Each save is its own conversation_updated."""
        outgoing = msg.message_type == MESSAGE_TYPES["outgoing"] and not msg.private
        human = outgoing and msg.sender_type == "User"
        if human and conv.first_reply_created_at is None:
            self._save(conv, first_reply_created_at=msg.created_at, waiting_since=None)
        elif (human or (outgoing and msg.sender_type == "AgentBot")) and conv.waiting_since:
            self._save(conv, waiting_since=None)
        elif msg.message_type == MESSAGE_TYPES["incoming"] and conv.waiting_since is None:
            self._save(conv, waiting_since=msg.created_at)

    def _reopen(self, conv: Conversation) -> None:
        contact = self.contacts[conv.contact_inbox.contact_id]
        if contact.blocked:
            return
        if conv.status == "snoozed":
            self._set_status(conv, "open")
        elif conv.status == "resolved":
            self._set_status(conv, "pending" if self.bot_active else "open")

    def _messages_index(self, conv: Conversation, before: int | None) -> list[dict[str, Any]]:
        chat = [m for m in self._messages_of(conv) if m.chat and (before is None or m.id < before)]
        return [self._message_public(m) for m in chat[-20:]]

    def _sender(self, msg: Message) -> Contact | Agent | Bot | None:
        if msg.sender_type == "Contact":
            return self.contacts.get(msg.sender_id or 0)
        if msg.sender_type == "User":
            return self.agents.get(msg.sender_id or 0)
        if msg.sender_type == "AgentBot":
            return self.bot
        return None  # Chatwoot's own template messages

    def _sender_push(self, msg: Message) -> dict[str, Any] | None:
        sender = self._sender(msg)
        return sender.push() if sender is not None else None

    def _sender_webhook(self, msg: Message) -> dict[str, Any] | None:
        sender = self._sender(msg)
        if isinstance(sender, Contact):
            return sender.webhook(self.account)
        return sender.webhook() if sender is not None else None

    def _with_attachments_and_sender(self, data: dict[str, Any], msg: Message) -> dict[str, Any]:
        """Both jbuilder views add ``attachments`` and ``sender`` only when there are some."""
        if msg.attachments:
            data["attachments"] = msg.attachments
        sender = self._sender_push(msg)
        if sender is not None:
            data["sender"] = sender
        return data

    def _message_public(self, msg: Message) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": msg.id,
            "content": msg.content,
            "message_type": msg.message_type,
            "content_type": msg.content_type,
            "content_attributes": msg.content_attributes,
            "created_at": int(msg.created_at),
            "conversation_id": msg.conversation_id,
        }
        return self._with_attachments_and_sender(data, msg)

    def _message_app(self, msg: Message) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": msg.id,
            "content": msg.content,
            "inbox_id": self.inbox_id,
            "conversation_id": msg.conversation_id,
            "message_type": msg.message_type,
            "content_type": msg.content_type,
            "status": msg.status,
            "content_attributes": msg.content_attributes,
            "created_at": int(msg.created_at),
            "private": msg.private,
            "source_id": msg.source_id,
            "sender": self._sender_push(msg),
        }
        if msg.attachments:
            data["attachments"] = msg.attachments
        return data

    def _message_push(
        self, msg: Message, conv: Conversation, *, webhook: bool = False
    ) -> dict[str, Any]:
        """Message#push_event_data; in webhooks (webhook_push_event_data) the content is
        normalised as Messages::WebhookContentNormalizer does."""
        content = _webhook_content(msg.content) if webhook else msg.content
        data = {
            "id": msg.id,
            "content": content,
            "account_id": self.account["id"],
            "inbox_id": self.inbox_id,
            "conversation_id": msg.conversation_id,
            "message_type": msg.message_type,
            "created_at": int(msg.created_at),
            "updated_at": iso(msg.updated_at),
            "private": msg.private,
            "status": msg.status,
            "source_id": msg.source_id,
            "content_type": msg.content_type,
            "content_attributes": msg.content_attributes,
            "sender_type": msg.sender_type,
            "sender_id": msg.sender_id,
            "external_source_ids": {},
            "additional_attributes": {},
            "processed_message_content": content,
            "sentiment": {},
            "conversation": {
                "assignee_id": conv.assignee_id,
                "unread_count": 0,
                "last_activity_at": int(conv.last_activity_at),
                "contact_inbox": {"source_id": conv.contact_inbox.source_id},
            },
        }
        return self._with_attachments_and_sender(data, msg)

    def _message_webhook(self, msg: Message) -> dict[str, Any]:
        conv = self.conversations[msg.conversation_id]
        data: dict[str, Any] = {
            "account": self.account,
            "additional_attributes": {},
            "content_attributes": msg.content_attributes,
            "content_type": msg.content_type,
            "content": _webhook_content(msg.content),
            "conversation": self._conversation_webhook(conv),
            "created_at": iso(msg.created_at),
            "id": msg.id,
            "inbox": {"id": self.inbox_id, "name": self.inbox_name},
            "message_type": MESSAGE_TYPE_NAMES[msg.message_type],
            "private": msg.private,
            "sender": self._sender_webhook(msg),
            "source_id": msg.source_id,
        }
        if msg.attachments:
            data["attachments"] = msg.attachments
        return data

    # -- conversations ----------------------------------------------------------------------

    def _assignee_push(self, conv: Conversation) -> tuple[dict[str, Any] | None, str | None]:
        if conv.assignee_id in self.agents:
            return self.agents[conv.assignee_id].push(), "User"
        if conv.assignee_agent_bot_id == self.bot.id:
            return self.bot.push(), "AgentBot"
        return None, None

    def _conversation_public(self, conv: Conversation) -> dict[str, Any]:
        contact = self.contacts[conv.contact_inbox.contact_id]
        return {
            "id": conv.id,
            "uuid": conv.uuid,
            "inbox_id": self.inbox_id,
            "contact_last_seen_at": int(conv.contact_last_seen_at),
            "status": conv.status,
            "agent_last_seen_at": int(conv.agent_last_seen_at),
            "messages": [self._message_public(m) for m in self._messages_of(conv) if m.chat],
            "contact": contact.record(),
        }

    def _conversation_webhook(self, conv: Conversation) -> dict[str, Any]:
        contact = self.contacts[conv.contact_inbox.contact_id]
        chat = [m for m in self._messages_of(conv) if m.chat]
        assignee, assignee_type = self._assignee_push(conv)
        return {
            "additional_attributes": {},
            "can_reply": True,
            "channel": "Channel::Api",
            "contact_inbox": conv.contact_inbox.row(),
            "id": conv.id,
            "inbox_id": self.inbox_id,
            "messages": [self._message_push(chat[-1], conv, webhook=True)] if chat else [],
            "labels": list(conv.labels),
            "meta": {
                "sender": contact.push(),
                "assignee": assignee,
                "assignee_type": assignee_type,
                "team": None,
                "hmac_verified": conv.contact_inbox.hmac_verified,
            },
            "status": conv.status,
            "custom_attributes": conv.custom_attributes,
            "snoozed_until": iso(conv.snoozed_until) if conv.snoozed_until else None,
            "unread_count": 0,
            "first_reply_created_at": (
                iso(conv.first_reply_created_at) if conv.first_reply_created_at else None
            ),
            "priority": conv.priority,
            "waiting_since": int(conv.waiting_since or 0),
            "agent_last_seen_at": int(conv.agent_last_seen_at),
            "contact_last_seen_at": int(conv.contact_last_seen_at),
            "last_activity_at": int(conv.last_activity_at),
            "timestamp": int(conv.last_activity_at),
            "created_at": int(conv.created_at),
            "updated_at": conv.updated_at,
            "account": self.account,
        }

    def _app_conversation_create(self, body: dict[str, Any]) -> Conversation:
        """``ConversationsController#create`` (bots may call it): the contact inbox of
        ``contact_id`` in ``inbox_id`` (made with ``source_id``, or a new uuid, when
        missing), else the one whose ``source_id`` is given (404 when none); then the
        same ``ConversationBuilder`` as the public API, lock_to_single_conversation
        included. ``status`` sets a new conversation's status."""
        contact_id, source_id = body.get("contact_id"), body.get("source_id")
        if contact_id is not None:
            if int(contact_id) not in self.contacts or body.get("inbox_id") not in (
                    self.inbox_id, str(self.inbox_id)):
                raise ApiError(404, NOT_FOUND_APP)
            ci = next((c for c in self.contact_inboxes.values()
                       if c.contact_id == int(contact_id)
                       and (source_id is None or c.source_id == str(source_id))), None)
            if ci is None:
                ci = ContactInbox(self._next("contact_inbox"), int(contact_id), self.inbox_id,
                                  str(source_id or uuid.uuid4()))
                self.contact_inboxes[ci.source_id] = ci
        else:
            found = self.contact_inboxes.get(str(source_id)) if source_id else None
            if found is None or found.contact_id not in self.contacts:
                raise ApiError(404, NOT_FOUND_APP)
            ci = found
        before = set(self.conversations)
        conv = self._conversation_create(ci, body)
        status = body.get("status")
        if conv.id not in before and status in ("open", "pending", "resolved", "snoozed"):
            conv.status = str(status)
        return conv

    def _conversation_api(self, conv: Conversation) -> dict[str, Any]:
        """``GET /conversations/{id}``: app/views/api/v1/conversations/partials/
        _conversation.json.jbuilder (the REST partial, not the webhook's push form): the
        sender as api/v1/models/_contact, the assignee as api/v1/models/_agent, times as
        integers, no contact_inbox (it would carry the contact's pubsub_token)."""
        contact = self.contacts[conv.contact_inbox.contact_id]
        messages = self._messages_of(conv)
        spoken = [m for m in messages if m.message_type != MESSAGE_TYPES["activity"]]
        meta: dict[str, Any] = {
            "sender": {
                "additional_attributes": contact.additional_attributes,
                "availability_status": "offline",
                "email": contact.email,
                "id": contact.id,
                "name": contact.name,
                "phone_number": contact.phone_number,
                "blocked": contact.blocked,
                "identifier": contact.identifier,
                "thumbnail": "",
                "custom_attributes": contact.custom_attributes,
                "last_activity_at": int(contact.updated_at),
                "created_at": int(contact.created_at),
            },
            "channel": "Channel::Api",
            "hmac_verified": conv.contact_inbox.hmac_verified,
        }
        if conv.assignee_id is not None and conv.assignee_id in self.agents:
            meta["assignee"] = {**self.agents[conv.assignee_id].api(), "provider": "email"}
        return {
            "meta": meta,
            "id": conv.id,
            "messages": [self._message_push(messages[-1], conv)] if messages else [],
            "account_id": self.account["id"],
            "uuid": conv.uuid,
            "additional_attributes": {},
            "agent_last_seen_at": int(conv.agent_last_seen_at),
            "assignee_last_seen_at": 0,
            "can_reply": True,
            "contact_last_seen_at": int(conv.contact_last_seen_at),
            "custom_attributes": conv.custom_attributes,
            "inbox_id": self.inbox_id,
            "labels": list(conv.labels),
            "muted": False,
            "snoozed_until": iso(conv.snoozed_until) if conv.snoozed_until else None,
            "status": conv.status,
            "created_at": int(conv.created_at),
            "timestamp": int(conv.last_activity_at),
            "first_reply_created_at": int(conv.first_reply_created_at or 0),
            "unread_count": sum(1 for m in messages if m.message_type == 0
                                and m.created_at > conv.agent_last_seen_at),
            "last_non_activity_message": (self._message_push(spoken[-1], conv)
                                          if spoken else None),
            "last_activity_at": int(conv.last_activity_at),
            "priority": conv.priority,
            "waiting_since": int(conv.waiting_since or 0),
            "sla_policy_id": None,
        }

    def _save(self, conv: Conversation, **columns: Any) -> bool:
        """One ``conversation.save!``: set the columns, then run what Conversation's
        after-update-commit callbacks do (app/models/conversation.rb). A status change
        sends ``conversation_status_changed`` (its ``changed_attributes`` is null in
        practice), and a change to a key of ``list_of_keys`` sends ONE
        ``conversation_updated`` listing every changed column (``previous_changes``), so
        several changes made together are one event. Nothing changed: no event, False."""
        if "status" in columns and columns["status"] != "snoozed":
            columns.setdefault("snoozed_until", None)  # ensure_snooze_until_reset
        if columns.get("assignee_id") is not None:
            columns["assignee_agent_bot_id"] = None  # reset_agent_bot_when_assignee_present
        elif columns.get("status") not in (None, "pending") and conv.status == "pending":
            # leaving the bot's queue ends the bot's assignment (bot_handoff!, human open)
            columns.setdefault("assignee_agent_bot_id", None)
        diff: dict[str, tuple[Any, Any]] = {}
        for column, new in columns.items():
            name = _FIELDS.get(column, column)
            old = getattr(conv, name)
            if old != new:
                diff[column] = (old, new)
                setattr(conv, name, new)
        if not diff:
            return False
        before, now = conv.updated_at, time.time()
        conv.updated_at = now
        if "status" in diff:
            self._emit("conversation_status_changed", lambda:
                       {**self._conversation_webhook(conv), "changed_attributes": None})
            diff["status_changed_at"] = (before, now)
        if not diff.keys() & self.behaviour.update_keys:
            return True
        diff["updated_at"] = (before, now)

        def shown(column: str, value: Any) -> Any:
            if column in _TIMES | {"status_changed_at", "updated_at"} and value is not None:
                return iso(value)
            return list(value) if isinstance(value, list) else value

        changed = [{k: {"previous_value": shown(k, old), "current_value": shown(k, new)}}
                   for k, (old, new) in diff.items()]
        self._emit("conversation_updated", lambda:
                   {**self._conversation_webhook(conv), "changed_attributes": changed})
        return True

    def _set_status(self, conv: Conversation, status: str) -> None:
        self._save(conv, status=status)

    def _assign(self, conv: Conversation, assignee_id: int | None) -> None:
        """``Conversations::AssignmentService#assign_agent``, one save: an agent taking a
        pending conversation opens it (and starts its waiting time when none runs)."""
        columns: dict[str, Any] = {"assignee_id": assignee_id}
        if assignee_id is not None and conv.status == "pending":
            columns["status"] = "open"
            if conv.waiting_since is None:
                columns["waiting_since"] = time.time()
        self._save(conv, **columns)

    # -- Application API --------------------------------------------------------------------

    def _who(self, r: Request) -> str:
        value = r.header("api_access_token")
        if value and hmac.compare_digest(value, self.bot.access_token):
            return "bot"
        if value and hmac.compare_digest(value, self.user_token):
            return "user"
        raise ApiError(401, {"error": "Invalid Access Token"})

    def _application(self, r: Request, account_id: int, rest: str) -> Reply:
        who = self._who(r)
        if account_id != self.account["id"]:
            # EnsureCurrentAccountHelper: Account.find raises RecordNotFound (one account here)
            raise ApiError(404, NOT_FOUND_APP)
        body = _body(r)
        controller, action, conv, extra = self._app_route(r.method, rest, who)
        if controller == "agents":
            return Reply(200, [a.api() for a in self.agents.values()])
        if controller == "contact_merges":
            # actions/contact_merges_controller.rb: contacts.find (404), ContactMergeAction
            # (the mergee's conversations and contact inboxes move, the mergee goes)
            try:
                base, mergee = int(body["base_contact_id"]), int(body["mergee_contact_id"])
            except (KeyError, TypeError, ValueError):
                raise ApiError(404, NOT_FOUND_APP) from None
            if base not in self.contacts or mergee not in self.contacts or base == mergee:
                raise ApiError(404, NOT_FOUND_APP)
            self.merge_contacts(base, mergee)
            contact = self.contacts[base]
            return Reply(200, {"id": contact.id, "name": contact.name, "email": contact.email,
                               "phone_number": contact.phone_number,
                               "identifier": contact.identifier})
        if (controller, action) == ("conversations", "create"):
            return Reply(200, self._conversation_api(self._app_conversation_create(body)))
        if controller == "accounts":  # app/views/api/v1/models/_account.json.jbuilder
            return Reply(200, {
                "settings": {"keep_pending_on_bot_failure": self.keep_pending_on_bot_failure},
                "features": {}, "id": self.account["id"], "locale": "en",
                "name": self.account["name"], "domain": None, "support_email": None,
                "status": "active", "auto_resolve_duration": None,
                "created_at": "2025-01-01T00:00:00.000Z"})
        if (controller, action) == ("inboxes", "index"):
            return Reply(200, {"payload": [self._inbox_app()]})
        if controller == "inboxes":
            return Reply(200, self._inbox_app())
        assert conv is not None
        if (controller, action) == ("conversations", "show"):
            return Reply(200, self._conversation_api(conv))
        if (controller, action) == ("messages", "create"):
            data = self._message_app(self._app_message(r, conv, body, who))
            if body.get("echo_id") not in (None, ""):
                # an attr_accessor, never stored: only this answer (and websockets) carry it
                data = {"echo_id": body["echo_id"], **data}
            return Reply(200, data)
        if (controller, action) == ("messages", "update"):
            return Reply(200, self._message_status(conv, int(extra or 0), body))
        if (controller, action) == ("conversations", "toggle_status"):
            return Reply(200, self._toggle_status(conv, body, who))
        if (controller, action) == ("conversations", "toggle_typing_status"):
            state = body.get("typing_status")
            if state in ("on", "off"):
                self._emit(f"conversation_typing_{state}", lambda: {
                    "user": self.bot.webhook() if who == "bot" else self.agents[USER_ID].webhook(),
                    "conversation": self._conversation_webhook(conv),
                    "is_private": bool(body.get("is_private")),
                })
            return Reply(200, None)
        if (controller, action) == ("conversations", "toggle_priority"):
            self._save(conv, priority=body.get("priority") or None)
            return Reply(200, None)
        if (controller, action) == ("conversations", "update"):
            # ConversationsController#update permits only priority, then renders the partial
            if "priority" in body:
                priority = body.get("priority") or None
                if priority not in (None, "low", "medium", "high", "urgent"):
                    raise ApiError(500, {"status": 500, "error": "Internal Server Error"})
                self._save(conv, priority=priority)
            return Reply(200, self._conversation_api(conv))
        if (controller, action) == ("conversations", "custom_attributes"):
            attrs = body.get("custom_attributes") or {}
            if not isinstance(attrs, dict):
                attrs = {}
            new = {**conv.custom_attributes, **attrs} if body.get("merge") else dict(attrs)
            _check_attributes(new)
            self._save(conv, custom_attributes=new)
            return Reply(200, {"custom_attributes": conv.custom_attributes})
        if controller == "labels":
            if action == "create":
                self._save(conv, label_list=_tag_list(body.get("labels")))
            return Reply(200, {"payload": conv.labels})
        if (controller, action) == ("assignments", "create"):
            assigned = self._assignment(conv, body)
            # jbuilder renders nil as the JSON literal null, not an empty body
            return Reply(200, b"null" if assigned is None else assigned)
        raise ApiError(404, NOT_FOUND_APP)

    def _app_route(
        self, method: str, rest: str, who: str
    ) -> tuple[str, str, Conversation | None, str | None]:
        """The action a request reaches, checked as Chatwoot's before_actions run: the
        bots' allow-list before the record is looked up. A route we do not model answers
        a bot with the bots' 401 (it is one of Chatwoot's many we leave out) and a user
        with 404."""
        try:
            controller, action, conversation_id, extra = self._action(method, rest)
        except ApiError:
            if who == "bot":
                raise ApiError(401, BOT_REFUSED) from None
            raise
        if who == "bot" and (controller, action) not in self.behaviour.bot_endpoints:
            raise ApiError(401, BOT_REFUSED)
        conv = None
        if conversation_id is not None:
            conv = self.conversations.get(conversation_id)
            if conv is None:
                raise ApiError(404, NOT_FOUND_APP)
        return controller, action, conv, extra

    def _action(self, method: str, rest: str) -> tuple[str, str, int | None, str | None]:
        if rest == "" and method == "GET":
            return "accounts", "show", None, None
        if rest == "/agents" and method == "GET":
            return "agents", "index", None, None
        if rest == "/actions/contact_merge" and method == "POST":
            return "contact_merges", "create", None, None
        if rest == "/conversations" and method == "POST":
            return "conversations", "create", None, None
        if rest == "/inboxes" and method == "GET":
            return "inboxes", "index", None, None
        if rest == f"/inboxes/{self.inbox_id}" and method == "GET":
            return "inboxes", "show", None, None
        m = re.match(r"^/conversations/(\d+)(?:/([a-z_]+))?(?:/(\d+))?$", rest)
        if not m:
            raise ApiError(404, NOT_FOUND_APP)
        conv = int(m.group(1))
        sub, extra = m.group(2), m.group(3)
        routes = {
            (None, "GET"): ("conversations", "show"),
            (None, "PATCH"): ("conversations", "update"),
            (None, "PUT"): ("conversations", "update"),
            ("messages", "POST"): ("messages", "create"),
            ("toggle_status", "POST"): ("conversations", "toggle_status"),
            ("toggle_typing_status", "POST"): ("conversations", "toggle_typing_status"),
            ("toggle_priority", "POST"): ("conversations", "toggle_priority"),
            ("custom_attributes", "POST"): ("conversations", "custom_attributes"),
            ("labels", "GET"): ("labels", "index"),
            ("labels", "POST"): ("labels", "create"),
            ("assignments", "POST"): ("assignments", "create"),
        }
        if sub == "messages" and extra and method in ("PATCH", "PUT"):
            return "messages", "update", conv, extra
        if extra or (sub, method) not in routes:
            raise ApiError(404, NOT_FOUND_APP)
        controller, action = routes[(sub, method)]
        return controller, action, conv, None

    def _inbox_app(self) -> dict[str, Any]:
        """app/views/api/v1/models/_inbox.json.jbuilder for an API inbox: the inbox's own
        columns, every channel-specific key (null when not this channel's), then the API
        channel's webhook, identifier and secrets (an administrator's view)."""
        return {
            "id": self.inbox_id,
            "avatar_url": "",
            "channel_id": self.inbox_id + 100,
            "name": self.inbox_name,
            "channel_type": "Channel::Api",
            "greeting_enabled": False,
            "greeting_message": None,
            "working_hours_enabled": False,
            "enable_email_collect": True,
            "csat_survey_enabled": False,
            "enable_auto_assignment": True,
            "out_of_office_message": None,
            "working_hours": [],
            "timezone": "UTC",
            "callback_webhook_url": None,
            "allow_messages_after_resolved": True,
            "sender_name_type": "friendly",
            "business_name": None,
            "widget_color": None,
            "website_url": None,
            "welcome_title": None,
            "welcome_tagline": None,
            "web_widget_script": None,
            "website_token": None,
            "selected_feature_flags": None,
            "reply_time": None,
            "page_id": None,
            "phone_number": None,
            "forward_to_email": None,
            "lock_to_single_conversation": self.lock_to_single_conversation,
            "webhook_url": self.webhook_url or "",
            "secret": self.webhook_secret,
            "hmac_mandatory": self.hmac_mandatory,
            "hmac_token": self.hmac_token,
            "inbox_identifier": self.inbox_identifier,
        }

    def _app_message(
        self, r: Request, conv: Conversation, body: dict[str, Any], who: str
    ) -> Message:
        content, files = _content_and_files(r, body, self.blobs)
        message_type = str(body.get("message_type") or "outgoing")
        if message_type not in ("incoming", "outgoing", "template"):
            raise ApiError(422, {"error": f"'{message_type}' is not a valid message_type"})
        attrs = body.get("content_attributes") or {}
        if isinstance(attrs, str):
            try:
                attrs = json.loads(attrs)
            except ValueError:
                attrs = {}
        if not isinstance(attrs, dict):
            attrs = {}
        attrs = self._in_reply_to(conv, dict(attrs))
        private = str(body.get("private")).lower() == "true"
        if message_type != "outgoing":
            # MessageBuilder#sender: anything not outgoing (incoming, template) is the contact's
            sender: tuple[str | None, int | None] = ("Contact", conv.contact_inbox.contact_id)
        elif body.get("sender_type") == "AgentBot" and who == "user":
            sender = ("AgentBot", self.bot.id)
        elif who == "bot":
            sender = ("AgentBot", self.bot.id)
        else:
            sender = ("User", USER_ID)
        # Messages::MessageBuilder reads content_type from the raw params (default text)
        content_type = str(body.get("content_type") or "text")
        if content_type not in CONTENT_TYPES:
            raise ApiError(422, {"error": f"'{content_type}' is not a valid content_type"})
        try:
            return self._create_message(
                conv, content, message_type, sender, private=private,
                source_id=body.get("source_id"), content_attributes=attrs, attachments=files,
                content_type=content_type,
            )
        except ApiError as exc:
            # MessagesController#create rescues every error as {error: e.message}, 422
            problem = exc.reply.body if isinstance(exc.reply.body, dict) else {}
            if exc.reply.status != 422 or "message" not in problem:
                raise
            raise ApiError(422, {"error": f"Validation failed: {problem['message']}"}) from None

    def _in_reply_to(self, conv: Conversation, attrs: dict[str, Any]) -> dict[str, Any]:
        """Messages::InReplyToMessageBuilder: ``in_reply_to`` is looked up among *this
        conversation's* messages; found, it keeps the id and adds the quoted message's
        ``source_id`` as ``in_reply_to_external_id``; not found, both become null. An
        ``in_reply_to_external_id`` alone is not looked up (chatwoot#10859)."""
        if attrs.get("in_reply_to") in (None, ""):
            return attrs
        try:
            wanted = int(attrs["in_reply_to"])
        except (TypeError, ValueError):
            wanted = -1
        quoted = next((m for m in self._messages_of(conv) if m.id == wanted), None)
        attrs["in_reply_to"] = quoted.id if quoted else None
        attrs["in_reply_to_external_id"] = quoted.source_id if quoted else None
        return attrs

    def _message_status(
        self, conv: Conversation, message_id: int, body: dict[str, Any]
    ) -> dict[str, Any]:
        msg = next((m for m in self._messages_of(conv) if m.id == message_id), None)
        if msg is None:
            raise ApiError(404, NOT_FOUND_APP)
        self._update_status(msg, body.get("status"), body.get("external_error"))
        return self._message_app(msg)

    def _update_status(self, msg: Message, status: Any, external_error: Any) -> bool:
        """app/services/messages/status_update_service.rb: an unknown status, or ``read``
        going back to ``delivered``, changes nothing (and the answer is still 200);
        ``external_error`` is kept only on a failure and cleared otherwise. A save that
        changes nothing sends no ``message_updated``."""
        if status not in ("sent", "delivered", "read", "failed"):
            return False
        if msg.status == "read" and status == "delivered":
            return False
        error = external_error if status == "failed" else None
        attrs = dict(msg.content_attributes)
        if error is None:
            attrs.pop("external_error", None)
        else:
            attrs["external_error"] = error
        if msg.status == status and attrs == msg.content_attributes:
            return False
        msg.status, msg.content_attributes = str(status), attrs
        msg.updated_at = time.time()
        self._emit("message_updated", lambda: self._message_webhook(msg))
        return True

    def _toggle_status(self, conv: Conversation, body: dict[str, Any], who: str) -> dict[str, Any]:
        """``ConversationsController#toggle_status`` and its toggle_status.json.jbuilder."""
        status = body.get("status") or None
        success: bool | None = True
        if who == "bot" and conv.status == "pending" and status == "open":
            # Conversation#bot_handoff!: the waiting time starts (its own save) and the
            # conversation opens; @status is never assigned here, so success renders null
            if conv.waiting_since is None:
                self._save(conv, waiting_since=time.time())
            self._save(conv, status="open")
            success = None
        else:
            if status is None:  # Conversation#toggle_status
                status = "resolved" if conv.status == "open" else "open"
            if status not in ("open", "resolved", "pending", "snoozed"):
                # the enum's ArgumentError is not rescued
                raise ApiError(500, {"status": 500, "error": "Internal Server Error"})
            columns: dict[str, Any] = {"status": status}
            if status == "snoozed" and body.get("snoozed_until") not in (None, ""):
                # unix seconds, kept on the conversation
                try:
                    columns["snoozed_until"] = float(body["snoozed_until"])
                except (TypeError, ValueError):
                    raise ApiError(500, {"status": 500, "error": "Internal Server Error"}) \
                        from None
            self._save(conv, **columns)
        if conv.status == "open" and who == "user":
            # handle_human_open: the bot's assignment ends, and a user whose role is agent
            # takes the conversation
            owner = self.agents[USER_ID]
            self._save(conv, assignee_agent_bot_id=None,
                       **({"assignee_id": owner.id} if owner.role == "agent" else {}))
        return {"meta": {}, "payload": {
            "success": success, "conversation_id": conv.id, "current_status": conv.status,
            "snoozed_until": iso(conv.snoozed_until) if conv.snoozed_until else None}}

    def _assignment(self, conv: Conversation, body: dict[str, Any]) -> Any:
        """``Conversations::AssignmentsController#create``: an agent (or bot) when
        ``assignee_id`` is given, else a team when ``team_id`` is (the account has none,
        so ``null``), else ``null``; the answer is the agent's JSON
        (api/v1/models/_agent), the bot's (api/v1/models/_agent_bot_slim) or ``null``
        (rendered, not an empty body)."""
        if str(body.get("assignee_type") or "") == "AgentBot":
            # AssignmentService#assign_ai_assignee: an unknown bot changes nothing
            if str(body.get("assignee_id")) != str(self.bot.id):
                return None
            self._save(conv, assignee_id=None, assignee_agent_bot_id=self.bot.id,
                       status="pending")
            return self.bot.slim()
        if "assignee_id" not in body:
            return None  # {} or {team_id}: the agent assignment is left alone
        # AssignmentService#assign_agent: users.find_by(id:) so an unknown id is nil,
        # which unassigns and renders null
        try:
            agent = self.agents.get(int(body["assignee_id"]))
        except (TypeError, ValueError):
            agent = None
        self._assign(conv, agent.id if agent else None)
        return agent.api() if agent else None

    # -- agent actions (what people do in the dashboard) ------------------------------------

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

    def merge_contacts(self, base_id: int, mergee_id: int) -> None:
        """``POST /actions/contact_merge``: the mergee's contact inboxes (so its source ids)
        and conversations move to the base contact, then the mergee is deleted."""
        with self.lock:
            if int(base_id) not in self.contacts or int(mergee_id) not in self.contacts:
                raise KeyError("no such contact")
            for ci in self.contact_inboxes.values():
                if ci.contact_id == int(mergee_id):
                    ci.contact_id = int(base_id)
            del self.contacts[int(mergee_id)]

    def _conversation(self, conversation_id: int) -> Conversation:
        conv = self.conversations.get(int(conversation_id))
        if conv is None:
            raise KeyError(f"no conversation {conversation_id}")
        return conv

    # -- inspection -------------------------------------------------------------------------

    def conversation_messages(self, conversation_id: int) -> list[dict[str, Any]]:
        """Every message of a conversation (private ones included), Application-API form."""
        with self.lock:
            return [self._message_app(m) for m in self.messages
                    if m.conversation_id == int(conversation_id)]


def _body(r: Request) -> dict[str, Any]:
    ctype = (r.header("Content-Type") or "").lower()
    if not r.body:
        return {}
    if ctype.startswith("multipart/form-data"):
        fields, _ = parse_form(r.header("Content-Type") or "", r.body)
        return fields
    if ctype.startswith("application/x-www-form-urlencoded"):
        return {k: v[-1] for k, v in parse_qs(r.body.decode("utf-8", "replace")).items()}
    try:
        data = json.loads(r.body)
    except ValueError:
        raise ApiError(400, {"status": 400, "error": "Bad Request"}) from None
    return data if isinstance(data, dict) else {}


def _email(value: Any) -> str | None:
    """app/models/contact.rb: an email is down-cased before it is validated and stored
    (so matching ignores case), and one that is not an address is a 422."""
    if value in (None, ""):
        return None
    email = str(value).lower()
    if not EMAIL.match(email):
        raise ApiError(422, {"message": "Email Invalid email", "attributes": ["email"]})
    return email


def _query(r: Request) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(r.query).items()}


def _content_and_files(
    r: Request, body: dict[str, Any], blobs: dict[str, dict[str, Any]]
) -> tuple[str | None, list[dict[str, Any]]]:
    """The content and the uploads of a message; each upload's blob (its filename and
    content type, which Chatwoot stores but does not render) goes into ``blobs``."""
    files: list[dict[str, Any]] = []
    ctype = r.header("Content-Type") or ""
    if ctype.lower().startswith("multipart/form-data"):
        _, uploads = parse_form(ctype, r.body)
        for upload in uploads:
            if upload.name != "attachments[]":
                continue
            files.append(_store_blob(blobs, upload.data, upload.filename,
                                     upload.content_type))
    content = body.get("content")
    return (None if content is None else str(content)), files


def _store_blob(blobs: dict[str, dict[str, Any]], data: bytes, name: str,
                content_type: str, ready_at: float = 0.0) -> dict[str, Any]:
    """Keep an upload as ActiveStorage does and render it as ``Attachment#push_event_data``
    (no name beside the file: the URL ends with it). ``ready_at``: before that time the
    file answers 404, as an S3 direct upload still under way does (waha#1445)."""
    data_url = f"/rails/active_storage/blobs/{uuid.uuid4().hex}/{quote(name)}"
    blobs[data_url] = {"filename": name, "content_type": content_type,
                       "byte_size": len(data), "_data": data, "_ready_at": ready_at}
    return {
        "file_type": _file_type(content_type),
        "extension": name.rsplit(".", 1)[-1] if "." in name else None,
        "data_url": data_url,
        "thumb_url": "",
        "file_size": len(data),
    }


def _check_attributes(attributes: dict[str, Any]) -> None:
    """app/models/jsonb_attributes_length_validator.rb on a conversation's
    ``custom_attributes``; the RecordInvalid becomes RequestExceptionHandler's 422."""
    problems = []
    for key, value in attributes.items():
        if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_TEXT:
            problems.append(f"{key} length should be < {MAX_ATTRIBUTE_TEXT}")
        elif (isinstance(value, int) and not isinstance(value, bool)
              and value > MAX_ATTRIBUTE_NUMBER):
            problems.append(f"{key} value should be < {MAX_ATTRIBUTE_NUMBER}")
    if problems:
        raise ApiError(422, {
            "message": ", ".join(f"Custom attributes {p}" for p in problems),
            "attributes": ["custom_attributes"],
        })


def _tag_list(labels: Any) -> list[str]:
    """``label_list =`` as acts-as-taggable-on takes it: an array is joined with ", " and
    parsed again (so "a,b" is two labels), then TagList#clean! drops blanks, strips, and
    keeps the first of labels equal but for case."""
    if labels is None:
        return []
    text = ", ".join(str(x) for x in labels) if isinstance(labels, list) else str(labels)
    out: list[str] = []
    seen: set[str] = set()
    for part in text.split(","):
        tag = part.strip()
        if tag and tag.lower() not in seen:
            seen.add(tag.lower())
            out.append(tag)
    return out


def _webhook_content(content: str | None) -> str | None:
    """app/services/messages/webhook_content_normalizer.rb: CommonMark hard breaks (a
    backslash before the newline, as the dashboard's editor writes them) become plain
    newlines, and trailing newlines go (4.12.1/4.13.0, #13896 and #13950)."""
    if not content:
        return content
    return re.sub(r"(\r?\n)+\Z", "", re.sub(r"\\\r?\n", "\n", content))


def _file_type(content_type: str) -> str:
    """app/helpers/file_type_helper.rb: a fixed list of images and videos (so an SVG is a
    ``file``), any ``audio/`` is audio, everything else a file."""
    if content_type in IMAGE_TYPES:
        return "image"
    if content_type in VIDEO_TYPES:
        return "video"
    return "audio" if "audio/" in content_type else "file"
