"""Chatwoot webhooks, framework-neutral: verify, parse, dispatch (the slack_bolt pattern).

``WebhookHandler.handle(WebhookRequest) -> WebhookResponse``; ``chatwoot_mirror.flask``
only translates Flask requests. Bad input always gets a 4xx and changes nothing; the
raw payload (it carries the contact's ``pubsub_token``) is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

from .delivery import MARKER, SOURCE_ID_PREFIX
from .errors import ConfigError, StoreError
from .handoff import Handoff
from .handoff.rules import CHATWOOT, CHATWOOT_BOT_ERROR
from .identity import ContactIdentity, identify
from .media import url_name
from .outbound import OutboundPolicy, RefusedTarget, host_of
from .people import People
from .relay import AgentAttachment, AgentMessage
from .store import Store
from .untrusted import UntrustedInput, parse_json

log = logging.getLogger("chatwoot_mirror.webhooks")

MAX_BYTES = 1024 * 1024


@dataclass
class WebhookRequest:
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


@dataclass
class WebhookResponse:
    status: int
    body: dict[str, Any]


class Malformed(ValueError):
    """The payload is JSON but not a Chatwoot webhook we can read."""


def _reply(status: int, result: str, **extra: Any) -> WebhookResponse:
    return WebhookResponse(status, {"result": result, **extra})


class WebhookHandler:
    """Verifies and dispatches Chatwoot webhooks to the handoff state machine.

    Verification, in order of preference: ``secret`` (Chatwoot >= 4.13 signs with
    ``X-Chatwoot-Signature: sha256=HMAC(secret, "{timestamp}.{raw body}")``), else
    ``token`` (the URL must carry ``?token=...``), else ``insecure=True`` explicitly.
    """

    def __init__(
        self,
        store: Store,
        handoff: Handoff,
        *,
        secret: str | None = None,
        token: str | None = None,
        insecure: bool = False,
        max_age: float = 300.0,
        clock_skew: float = 5.0,
        max_bytes: int = MAX_BYTES,
        resume_on_unassign: bool = False,
        relay: Callable[[AgentMessage], bool] | None = None,
        relay_templates: bool = False,
        clock: Callable[[], float] | None = None,
        chatwoot_url: str | None = None,
        outbound: OutboundPolicy | None = None,
        bot_error_policy: str = "pending",
        bot_error_texts: tuple[str, ...] = (),
        people: People | None = None,
    ) -> None:
        if not (secret or token or insecure):
            raise ConfigError(
                "CHATWOOT_WEBHOOK_SECRET",
                "is not set: copy the API inbox's webhook secret (Chatwoot >= 4.13), or set "
                "CHATWOOT_WEBHOOK_TOKEN and add ?token=<it> to the webhook URL (older "
                "Chatwoot), or set CHATWOOT_WEBHOOK_INSECURE=true to accept unverified calls",
            )
        self.store = store
        self.handoff = handoff
        #: where each person last wrote from: agents' replies go there
        self.people = people
        self.secret = secret
        self.token = token
        self.max_age = max_age
        #: how far ahead of our clock a Chatwoot event time is believed (see _event_time)
        self.clock_skew = clock_skew
        self._told_skew = False
        self.max_bytes = max_bytes
        self.resume_on_unassign = resume_on_unassign
        self.relay = relay
        self.relay_templates = relay_templates
        #: agents' files are passed to providers by URL: only http(s), never a private
        #: address unless it is Chatwoot's own host or allowed by the operator
        self.chatwoot_url = chatwoot_url
        self.outbound = outbound or OutboundPolicy()
        #: ``pending``: undo Chatwoot's opening on a failed bot webhook; ``humans``: keep it
        self.bot_error_policy = bot_error_policy
        self.bot_error_texts = frozenset(
            _plain(text) for text in (BOT_ERROR_TEXT, *bot_error_texts) if text.strip())
        # resolved at call time, so that clocks patched in tests (freezegun) apply
        self.clock = clock or (lambda: time.time())

    # -- entry point --------------------------------------------------------------------------

    def handle(self, request: WebhookRequest) -> WebhookResponse:
        if len(request.body) > self.max_bytes:
            return _reply(413, "too_large")
        problem = self._verify(request)
        if problem:
            log.warning("webhook rejected reason=%s", problem)
            return _reply(401, "unauthorized", reason=problem)
        try:
            payload = parse_json(request.body)
        except UntrustedInput as exc:
            return _reply(400, "invalid_json", reason=exc.reason)
        if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
            return _reply(400, "not_a_chatwoot_event")
        try:
            delivery = request.header("X-Chatwoot-Delivery")
            if delivery and not self.store.first_seen("webhook:" + delivery[:100], self.clock()):
                return _reply(200, "duplicate")
            return self._dispatch(payload)
        except Malformed as exc:
            log.warning("webhook not understood event=%s problem=%s", payload["event"][:50], exc)
            return _reply(400, "malformed", reason=str(exc))
        except StoreError as exc:
            log.error("webhook not applied: store failed error=%s", exc)
            return _reply(503, "store_unavailable")

    def _verify(self, request: WebhookRequest) -> str | None:
        if self.secret:
            signature = request.header("X-Chatwoot-Signature") or ""
            stamp = request.header("X-Chatwoot-Timestamp") or ""
            # str.isdigit() is true for "²" and int() refuses it; 5,000 digits are too many
            # for int() as well: only a plain, short run of ASCII digits is a timestamp
            if not signature.startswith("sha256=") or not _ascii_digits(stamp, 12):
                return "missing signature"
            if abs(self.clock() - int(stamp)) > self.max_age:
                return "stale timestamp"
            given = signature[7:]
            if not given.isascii():  # compare_digest refuses non-ASCII str
                return "bad signature"
            expected = hmac.new(
                self.secret.encode(), stamp.encode() + b"." + request.body, hashlib.sha256
            ).hexdigest()
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return "bad signature"
            return None
        if self.token:
            given = request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return "bad token"
        return None

    # -- events -------------------------------------------------------------------------------

    def _dispatch(self, payload: dict[str, Any]) -> WebhookResponse:
        event = payload["event"]
        handler = {
            "message_created": self._message_created,
            "conversation_status_changed": self._status_changed,
            "conversation_updated": self._conversation_updated,
            "conversation_resolved": self._status_changed,
            "conversation_opened": self._conversation_opened,
        }.get(event)
        if handler is None:
            return _reply(200, "ignored")
        return handler(payload)

    def _message_created(self, payload: dict[str, Any]) -> WebhookResponse:
        conversation = _obj(payload, "conversation")
        key = _source_id(conversation)
        message_type = payload.get("message_type")
        sender = payload.get("sender") if isinstance(payload.get("sender"), dict) else None
        if payload.get("private") is True or _ours(payload):
            return _reply(200, "ignored")  # private notes and our own messages: never
        if message_type == "activity" and self._bot_error_opening(payload, conversation):
            return self._bot_error(key, payload, conversation)
        if message_type == "template" and sender is None and self.relay_templates:
            self._relay(key, payload, conversation, "template")
            return _reply(200, "relayed")  # Chatwoot speaking for the business
        if message_type != "outgoing" or sender is None or sender.get("type") != "user":
            return _reply(200, "ignored")  # customer messages, bots, templates
        at = self._event_time(_iso_time(payload.get("created_at")))
        decision = self.handoff.pause(key, "agent_reply", kind=CHATWOOT, at=at,
                                      conversation_id=_int(conversation, "id"),
                                      human_activity=True)
        relayed = self._relay(key, payload, conversation, "agent")
        return _reply(200, decision.outcome, relayed=relayed)

    def _bot_error_opening(self, payload: dict[str, Any], conversation: dict[str, Any]) -> bool:
        """Chatwoot's activity after opening a conversation because its webhook to the
        bot failed or took over 5 s: its text, no sender, and nobody assigned. (A person
        who opens a conversation is named in the text, or assigned.)"""
        content = payload.get("content")
        if not isinstance(content, str) or _plain(content) not in self.bot_error_texts:
            return False
        assignee = _dict(conversation.get("meta")).get("assignee")
        return payload.get("sender") in (None, {}) and not assignee

    def _bot_error(self, key: str, payload: dict[str, Any],
                   conversation: dict[str, Any]) -> WebhookResponse:
        conversation_id = _int(conversation, "id")
        if self.bot_error_policy != "pending":
            log.warning("conversation opened by chatwoot after a failed bot webhook, left to "
                        "agents contact=%s conversation=%s policy=%s", key, conversation_id,
                        self.bot_error_policy)
            return _reply(200, "ignored")
        at = self._event_time(_iso_time(payload.get("created_at")) or _number(payload,
                                                                              "created_at"))
        decision = self.handoff.resume(key, "chatwoot_bot_error", kind=CHATWOOT_BOT_ERROR,
                                       at=at, conversation_id=conversation_id)
        if decision.actions:
            log.warning("conversation opened by chatwoot after a failed bot webhook, back to "
                        "pending contact=%s conversation=%s", key, conversation_id)
        return _reply(200, decision.outcome)

    def _relay(self, key: str, payload: dict[str, Any], conversation: dict[str, Any],
               kind: str) -> bool:
        """Queue the message for the customer; whether it was (nothing to send, a
        redelivery, or no relay configured: ``False``)."""
        if self.relay is None:
            return False
        message_id, conversation_id = _int(payload, "id"), _int(conversation, "id")
        if message_id is None or conversation_id is None:
            raise Malformed("message or conversation id missing")
        attachments = []
        for item in payload.get("attachments") or []:
            if isinstance(item, dict) and isinstance(item.get("data_url"), str):
                url = self._file_url(item["data_url"], conversation_id)
                if url is None:
                    continue
                title = item.get("fallback_title")
                attachments.append(AgentAttachment(
                    url, str(item.get("file_type") or "file"),
                    title if isinstance(title, str) and title else _url_filename(url),
                ))
        content = payload.get("content")
        if not isinstance(content, str):
            content = ""
        if not content and not attachments:
            return False
        sender = _dict(payload.get("sender"))
        quoted = _dict(payload.get("content_attributes")).get("in_reply_to")
        return self.relay(AgentMessage(
            contact=self._identity(key, conversation),
            text=content,
            chatwoot_message_id=message_id,
            conversation_id=conversation_id,
            attachments=tuple(attachments),
            agent_name=sender.get("name") if isinstance(sender.get("name"), str) else None,
            kind=kind,
            in_reply_to=quoted if isinstance(quoted, int) and not isinstance(quoted, bool)
            else None,
        ))

    def _file_url(self, data_url: str, conversation_id: int) -> str | None:
        """An agent's file as a URL a provider may fetch, or ``None`` (logged) when it
        points where nobody should be sent (``file:``, loopback, a metadata service)."""
        url = urljoin(self.chatwoot_url + "/", data_url) if self.chatwoot_url else data_url
        trusted = [host_of(self.chatwoot_url)] if self.chatwoot_url else []
        try:
            return self.outbound.check(url, trusted=trusted, resolve=False)
        except RefusedTarget as exc:
            log.warning("agent file not relayed conversation=%s reason=%s", conversation_id, exc)
            return None

    def _identity(self, key: str, conversation: dict[str, Any]) -> ContactIdentity:
        """Where the customer is: where they last wrote from, else our stored identity,
        else what Chatwoot knows of them."""
        last = self.people.address(key) if self.people is not None else None
        if last is not None:
            return last
        stored = self.store.contact_identity(key)
        if stored is not None:
            return stored
        meta = _dict(conversation.get("meta"))
        contact = _dict(meta.get("sender"))
        for field_name in ("phone_number", "identifier"):
            value = contact.get(field_name)
            if isinstance(value, str) and value.strip():
                found = identify(value)
                return ContactIdentity(key, found.kind, found.identifier, found.phone_number,
                                       found.raw)
        raise Malformed("the contact has neither a stored identity nor a phone or identifier")

    def _status_changed(self, payload: dict[str, Any]) -> WebhookResponse:
        status = _str(payload, "status")
        key = _source_id(payload)
        at = self._event_time(_conversation_time(payload))
        if status in ("resolved", "pending"):
            return _reply(200, self.handoff.resume(key, status, kind=CHATWOOT, at=at).outcome)
        return _reply(200, "ignored")

    def _conversation_opened(self, payload: dict[str, Any]) -> WebhookResponse:
        key = _source_id(payload)
        at = self._event_time(_conversation_time(payload))
        if _str(payload, "status") == "open":
            return _reply(200, self.handoff.pause(key, "opened", kind=CHATWOOT, at=at,
                                                  conversation_id=_int(payload, "id")).outcome)
        return _reply(200, "ignored")

    def _conversation_updated(self, payload: dict[str, Any]) -> WebhookResponse:
        key = _source_id(payload)
        at = self._event_time(_conversation_time(payload))
        changes = payload.get("changed_attributes")
        if not isinstance(changes, list):
            raise Malformed("changed_attributes is not a list")
        status = _str(payload, "status")
        changed: dict[str, Any] = {}
        for item in changes:
            if isinstance(item, dict):
                changed.update(item)
        result = "ignored"
        move = changed.get("status")
        if isinstance(move, dict):
            if move.get("previous_value") == "pending" and move.get("current_value") == "open":
                result = self.handoff.pause(key, "taken_over", kind=CHATWOOT, at=at,
                                            conversation_id=_int(payload, "id")).outcome
            elif move.get("current_value") in ("resolved", "pending"):
                result = self.handoff.resume(key, str(move["current_value"]), kind=CHATWOOT,
                                             at=at).outcome
        assignee = changed.get("assignee_id")
        if isinstance(assignee, dict) and result == "ignored":
            meta = _dict(payload.get("meta"))
            human = meta.get("assignee_type") == "User"
            if assignee.get("current_value") and human and status != "resolved":
                result = self.handoff.pause(key, "assigned", kind=CHATWOOT, at=at,
                                            conversation_id=_int(payload, "id")).outcome
            elif assignee.get("current_value") is None and self.resume_on_unassign:
                result = self.handoff.resume(key, "unassigned", kind=CHATWOOT, at=at).outcome
        return _reply(200, result)

    def _event_time(self, at: float | None) -> float:
        """A signed event's Chatwoot time, made safe for the handoff clock.

        None means now. A time up to ``clock_skew`` seconds ahead of this host's clock is
        Chatwoot's, believed (clocks differ a little). A time further ahead (a Chatwoot
        clock running fast, a replayed or hand-made event, a bug) says nothing about order:
        the event counts as happening when it arrived, so it can never outrank an event
        that really happens after it. (Non-finite and overflowing numbers never get here:
        :func:`parse_json` refuses them.)"""
        now = self.clock()
        if at is None:
            return now
        if at > now + self.clock_skew:
            # once at WARNING (a clock to fix), then quietly: a clock 90 s ahead dates
            # every event so
            level = logging.DEBUG if self._told_skew else logging.WARNING
            self._told_skew = True
            log.log(level, "webhook event time ahead of this host's clock, taken as its "
                    "arrival ahead_seconds=%.0f skew_allowed=%.0f", at - now, self.clock_skew)
            return now
        return at


# -- careful readers of untrusted payloads ------------------------------------------------------

def _obj(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise Malformed(f"{key} is not an object")
    return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _source_id(conversation: dict[str, Any]) -> str:
    """Our contact key: the contact_inbox source_id chatwoot-mirror created the contact with."""
    inbox = _obj(conversation, "contact_inbox")
    source_id = inbox.get("source_id")
    if not isinstance(source_id, str) or not source_id or len(source_id) > 200:
        raise Malformed("contact_inbox.source_id is missing")
    return source_id


def _ours(payload: dict[str, Any]) -> bool:
    source_id = payload.get("source_id")
    attrs = payload.get("content_attributes")
    return (isinstance(source_id, str) and source_id.startswith(SOURCE_ID_PREFIX)) or (
        isinstance(attrs, dict) and MARKER in attrs
    )


#: ``conversations.activity.agent_bot.error_moved_to_open`` in Chatwoot's en.yml
BOT_ERROR_TEXT = "Conversation was marked open by system due to an error with the agent bot."


def _plain(text: str) -> str:
    """A text compared loosely: case, spacing and a final period do not matter."""
    return " ".join(text.split()).rstrip(".").casefold()


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _ascii_digits(value: str, longest: int) -> bool:
    return 0 < len(value) <= longest and value.isascii() and value.isdigit()


def _iso_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _conversation_time(payload: dict[str, Any]) -> float | None:
    """When Chatwoot last changed the conversation (``updated_at``, unix seconds)."""
    for key in ("updated_at", "timestamp"):
        value = _number(payload, key)
        if value is not None:
            return value
    return None


def _url_filename(url: str) -> str | None:
    """The file's name from its URL. Chatwoot renders no name for an uploaded file
    (Attachment#file_metadata has none; ``fallback_title`` is for locations and contacts),
    but its ActiveStorage URL ends with the blob's filename."""
    name = url_name(url)
    return name if "." in name.strip(".") else None
