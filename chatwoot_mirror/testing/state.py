"""The emulated Chatwoot's data: one account, one API inbox, its contacts, conversations and
messages, with the serialisers Chatwoot uses (public API, Application API, webhook forms).

Shapes follow Chatwoot's jbuilder views and ``webhook_data`` methods as recorded in
``shared/contracts/chatwoot`` (see ``research/chatwoot.md``).
"""

from __future__ import annotations

import random
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .versions import DEFAULT_VERSION, behaviour
from .wire import Faults

MESSAGE_TYPES = {"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}
MESSAGE_TYPE_NAMES = {v: k for k, v in MESSAGE_TYPES.items()}


def iso(ts: float) -> str:
    """Rails' JSON form of a Time: ISO-8601 with milliseconds and ``Z``."""
    return (
        datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int((ts % 1) * 1000):03d}Z"
    )


def token(length: int = 24) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass
class Agent:
    id: int
    name: str
    email: str
    availability_status: str = "online"
    role: str = "agent"

    def push(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "available_name": self.name.split()[0],
            "avatar_url": "",
            "type": "user",
            "availability_status": self.availability_status,
            "thumbnail": "",
        }

    def webhook(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "email": self.email, "type": "user"}

    def api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account_id": 1,
            "availability_status": self.availability_status,
            "auto_offline": True,
            "confirmed": True,
            "email": self.email,
            "available_name": self.name.split()[0],
            "name": self.name,
            "role": self.role,
            "thumbnail": "",
        }


@dataclass
class Bot:
    id: int
    name: str
    access_token: str
    description: str | None = None
    outgoing_url: str | None = None

    def push(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "avatar_url": "", "type": "agent_bot"}

    def webhook(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "type": "agent_bot"}

    def slim(self) -> dict[str, Any]:
        """app/views/api/v1/models/_agent_bot_slim.json.jbuilder (an account's own bot, so
        ``outgoing_url`` is shown)."""
        return {"id": self.id, "name": self.name, "description": self.description,
                "thumbnail": "", "outgoing_url": self.outgoing_url,
                "bot_type": "webhook", "assignee_type": "AgentBot"}


@dataclass
class Contact:
    id: int
    name: str
    email: str | None = None
    phone_number: str | None = None
    identifier: str | None = None
    custom_attributes: dict[str, Any] = field(default_factory=dict)
    additional_attributes: dict[str, Any] = field(default_factory=dict)
    blocked: bool = False
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def push(self) -> dict[str, Any]:
        return {
            "additional_attributes": self.additional_attributes,
            "custom_attributes": self.custom_attributes,
            "email": self.email,
            "id": self.id,
            "identifier": self.identifier,
            "name": self.name,
            "phone_number": self.phone_number,
            "thumbnail": "",
            "blocked": self.blocked,
            "type": "contact",
        }

    def webhook(self, account: dict[str, Any]) -> dict[str, Any]:
        """``Contact#webhook_data``: the push form without ``type``, plus account and avatar."""
        data = {k: v for k, v in self.push().items() if k != "type"}
        return {"account": account, "avatar": "", **data}

    def record(self) -> dict[str, Any]:
        """The full Contact row, as the public conversation view embeds it."""
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "phone_number": self.phone_number,
            "account_id": 1,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "additional_attributes": self.additional_attributes,
            "identifier": self.identifier,
            "custom_attributes": self.custom_attributes,
            "last_activity_at": iso(self.updated_at),
            "contact_type": "lead",
            "middle_name": "",
            "last_name": "",
            "location": None,
            "country_code": None,
            "blocked": self.blocked,
            "company_id": None,
        }


@dataclass
class ContactInbox:
    id: int
    contact_id: int
    inbox_id: int
    source_id: str
    pubsub_token: str = field(default_factory=token)
    hmac_verified: bool = False
    created_at: float = field(default_factory=time.time)

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "contact_id": self.contact_id,
            "inbox_id": self.inbox_id,
            "source_id": self.source_id,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.created_at),
            "hmac_verified": self.hmac_verified,
            "pubsub_token": self.pubsub_token,
        }


@dataclass
class Message:
    id: int
    conversation_id: int  # display id
    content: str | None
    message_type: int
    sender_type: str | None  # "Contact", "User", "AgentBot" or None
    sender_id: int | None
    private: bool = False
    source_id: str | None = None
    content_type: str = "text"
    content_attributes: dict[str, Any] = field(default_factory=dict)
    status: str = "sent"
    attachments: list[dict[str, Any]] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @property
    def chat(self) -> bool:
        """Chatwoot's ``chat`` scope: not private, not activity."""
        return not self.private and self.message_type != MESSAGE_TYPES["activity"]


@dataclass
class Conversation:
    id: int  # display id
    uuid: str
    contact_inbox: ContactInbox
    status: str = "open"
    assignee_id: int | None = None
    assignee_agent_bot_id: int | None = None
    labels: list[str] = field(default_factory=list)
    #: acts-as-taggable-on's cache column of the labels, ", "-joined (null until first set)
    cached_label_list: str | None = None
    custom_attributes: dict[str, Any] = field(default_factory=dict)
    priority: str | None = None
    sla_policy_id: int | None = None
    #: when the conversation's AppliedSla was created (Enterprise, with sla_policy_id)
    applied_sla_at: float | None = None
    snoozed_until: float | None = None
    first_reply_created_at: float | None = None
    waiting_since: float | None = None
    agent_last_seen_at: float = 0
    contact_last_seen_at: float = 0
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    last_activity_at: float = field(default_factory=time.time)

    @staticmethod
    def new(display_id: int, contact_inbox: ContactInbox, status: str) -> Conversation:
        return Conversation(display_id, str(uuid.uuid4()), contact_inbox, status=status)


#: the agent whose access token ``user_token`` is (Ana, role agent)
USER_ID = 3


class Account:
    """All state of one emulated Chatwoot account with one API inbox, and the few lookups
    every layer shares. The rules live above it: ``models`` (app/models, builders,
    services), ``webhooks`` (listeners and presenters), ``public_api`` and
    ``application_api`` (the controllers and their views)."""

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
        sla_policies: dict[int, str] | None = None,
        api_access: bool = True,
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
        #: the account's SLA policies by id (name), and with them the Enterprise ``sla``
        #: feature; None: the feature is off
        self.sla_policies = dict(sla_policies) if sla_policies is not None else None
        #: the ``api_and_webhooks`` feature a Chatwoot Cloud account needs for token calls
        #: (4.16.0+); off, every Application API call with a token answers 403
        self.api_access = api_access
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

    def _next(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def _emit(self, event: str, build: Callable[[], dict[str, Any]]) -> None:
        if not self.wants_events():
            return
        payload = {**build(), "event": event}
        for listener in list(self.listeners):
            listener(event, payload)

    def _messages_of(self, conv: Conversation) -> list[Message]:
        return self._by_conversation.get(conv.id, [])

    def _sender(self, msg: Message) -> Contact | Agent | Bot | None:
        if msg.sender_type == "Contact":
            return self.contacts.get(msg.sender_id or 0)
        if msg.sender_type == "User":
            return self.agents.get(msg.sender_id or 0)
        if msg.sender_type == "AgentBot":
            return self.bot
        return None  # Chatwoot's own template messages

    def _message_in(self, conv: Conversation, message_id: int) -> Message | None:
        """``conversation.messages.find_by(id:)``: only this conversation's messages."""
        return next((m for m in self._messages_of(conv) if m.id == message_id), None)

    def _conversation(self, conversation_id: int) -> Conversation:
        conv = self.conversations.get(int(conversation_id))
        if conv is None:
            raise KeyError(f"no conversation {conversation_id}")
        return conv

    def _contact_conversations(self, contact_id: int) -> list[Conversation]:
        return [c for c in self.conversations.values() if c.contact_inbox.contact_id == contact_id]
