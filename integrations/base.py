"""What every channel adapter shares (the sentry-sdk integrations pattern).

An adapter is a small class per provider with the same shape:

* ``parse(headers, body) -> list[InboundEvent]``: a provider webhook, normalized. Shapes it
  does not know are skipped with one log line, never an exception.
* ``send_text(contact, text)`` / ``send_media(contact, url_or_bytes, mime_type, caption)``:
  send to the customer, returning the provider's message id.
* ``verify(headers, body, query)``: is this webhook really from the provider?
* ``download(media, max_bytes)``: fetch a file a customer sent (see
  :mod:`chatwoot_mirror.media`), and ``relay(AgentMessage)``: send an agent's reply.

Errors are :class:`ProviderError` (retryable or not); :class:`ProviderRejected` is also a
:class:`~chatwoot_mirror.relay.RelayRejected`, so an agent's reply the provider refuses
is reported failed to Chatwoot at once instead of being retried.
"""

from __future__ import annotations

import abc
import hmac
import logging
import mimetypes
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests

from chatwoot_mirror.client import Attachment
from chatwoot_mirror.errors import ConfigError, MirrorError
from chatwoot_mirror.identity import ContactIdentity
from chatwoot_mirror.media import MediaError, MediaRef
from chatwoot_mirror.outbound import OutboundPolicy
from chatwoot_mirror.relay import AgentAttachment, AgentMessage, RelayRejected
from chatwoot_mirror.untrusted import UntrustedInput, parse_json

log = logging.getLogger("chatwoot_mirror.integrations")

MESSAGE, STATUS, ECHO, OWNER = "message", "status", "echo", "owner"


@dataclass(frozen=True)
class InboundEvent:
    """One thing a provider told us, normalized.

    ``kind``: ``message`` (the customer wrote), ``status`` (a receipt for one of our
    messages: ``status`` is sent/delivered/read/failed), ``echo`` (a message sent through
    the provider's API, ours or another integration's), ``owner`` (typed by a person on the
    business phone itself). ``contact`` is the customer as the provider names them (phone
    digits, JID, BSUID), also for echoes and owner messages. ``timestamp`` is epoch seconds.
    """

    kind: str
    contact: str
    text: str = ""
    name: str | None = None
    message_id: str | None = None
    timestamp: float | None = None
    attachments: tuple[MediaRef, ...] = ()
    raw_type: str = ""
    status: str | None = None
    error: str | None = None
    #: False for what is shown to agents but needs no answer (a reaction, an edit)
    expects_reply: bool = True


@dataclass(frozen=True)
class BotReply:
    """What a bot function may return instead of a plain string: several messages (texts,
    or files by URL as :class:`~chatwoot_mirror.relay.AgentAttachment`), and a request to
    hand the contact to humans (``handoff`` = the reason; ``note`` for the agents)."""

    messages: list[str | AgentAttachment] = field(default_factory=list)
    handoff: str | None = None
    note: str | None = None


#: ``bot_fn(event) -> str | list[str | AgentAttachment] | BotReply | None``
BotFunction = Callable[[InboundEvent], Any]


class ProviderError(MirrorError):
    """A provider call failed. ``retryable``: a later attempt may succeed (5xx, 429,
    timeout); ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, operation: str, status: int | None = None,
                 retryable: bool = False) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.status = status
        self.retryable = retryable


class ProviderRejected(ProviderError, RelayRejected):
    """The provider refused the request (4xx): sending it again will not help."""


class ChannelAdapter(abc.ABC):
    """The interface of every channel adapter."""

    #: names this provider in logs and in queued file references
    name: ClassVar[str]

    @abc.abstractmethod
    def parse(self, headers: Mapping[str, str], body: bytes) -> list[InboundEvent]:
        """Normalize a webhook body; unknown shapes give ``[]`` and one log line."""

    @abc.abstractmethod
    def send_text(self, contact: str | ContactIdentity, text: str) -> str | None:
        """Send ``text`` to ``contact``; the provider's message id (``None`` if it gives
        none). Raises :class:`ProviderError`."""

    @abc.abstractmethod
    def send_media(
        self,
        contact: str | ContactIdentity,
        url_or_bytes: str | bytes,
        mime_type: str,
        caption: str | None = None,
        filename: str | None = None,
    ) -> str | None:
        """Send a file (a public URL, or the bytes) with an optional caption."""

    @abc.abstractmethod
    def verify(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str] | None = None
    ) -> bool:
        """True when the webhook carries this adapter's secret (constant-time compare)."""

    def download(self, media: MediaRef, max_bytes: int) -> Attachment:
        """Fetch a customer's file; raises :class:`~chatwoot_mirror.media.MediaError`."""
        raise MediaError(f"{self.name} cannot download files")

    def relay(self, message: AgentMessage) -> str | None:
        """Send an agent's reply (or the bot's): the text, then each file. A single file
        that takes captions carries the text as its caption instead."""
        files = list(message.attachments)
        text = message.text.strip()
        last: str | None = None
        caption_taken = len(files) == 1 and kind_of(mime_for(files[0])) in CAPTIONED and text
        if text and not caption_taken:
            last = self.send_text(message.contact, text)
        for item in files:
            last = self.send_media(message.contact, item.url, mime_for(item),
                                   caption=text if caption_taken else None,
                                   filename=item.filename)
        return last


# -- helpers shared by the HTTP adapters ---------------------------------------------------

CAPTIONED = {"image", "video", "document"}


def kind_of(mime_type: str | None) -> str:
    """WhatsApp's media type for a MIME type: image, video, audio or document."""
    major = (mime_type or "").split("/", 1)[0]
    return major if major in ("image", "video", "audio") else "document"


def mime_for(item: AgentAttachment) -> str:
    """MIME type of a file Chatwoot sends: from its name, else from Chatwoot's file type."""
    guessed = mimetypes.guess_type(item.filename or item.url.split("?", 1)[0])[0]
    if guessed:
        return guessed
    return {"image": "image/jpeg", "audio": "audio/mpeg", "video": "video/mp4"}.get(
        item.file_type, "application/octet-stream")


def env_value(environ: Mapping[str, str] | None, name: str, hint: str,
              required: bool = True) -> str | None:
    """An adapter setting from the environment; a missing required one fails at start-up
    with a message naming the variable and where to find its value."""
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if not value and required:
        raise ConfigError(name, f"is not set: {hint}")
    return value or None


def env_flag(environ: Mapping[str, str] | None, name: str) -> bool:
    value = (env_value(environ, name, "", required=False) or "false").lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ConfigError(name, "must be true or false")
    return value in ("1", "true", "yes", "on")


def header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def load_json(body: bytes, provider: str) -> Any:
    """The webhook's JSON, or ``None`` (logged once) when it is not JSON we will read
    (see :func:`chatwoot_mirror.untrusted.parse_json`: too deep, NaN, bad UTF-8)."""
    try:
        return parse_json(body)
    except UntrustedInput as exc:
        log.warning("webhook skipped provider=%s reason=%s", provider, exc.reason)
        return None


def skip(provider: str, reason: str) -> list[InboundEvent]:
    log.info("webhook skipped provider=%s reason=%s", provider, reason)
    return []


def digits_of(contact: str | ContactIdentity) -> str:
    """The address a provider needs: the number exactly as WhatsApp gave it (Brazilian
    numbers keep or lack the 9th digit as they came) when we have it, else E.164 digits."""
    if isinstance(contact, ContactIdentity):
        raw = contact.raw or contact.identifier
        if contact.kind == "phone" and not raw.replace("+", "").split("@")[0].isdigit():
            raw = contact.identifier  # a formatted number such as "+55 (11) 9..."
        contact = raw
    text = str(contact).strip()
    if "@" in text:
        user, _, domain = text.partition("@")
        if domain in ("s.whatsapp.net", "c.us"):
            return user.split(":", 1)[0]
        return text  # group and LID JIDs are sent to as they are
    return "".join(ch for ch in text if ch.isalnum() or ch == ".")


class HttpClient:
    """One :class:`requests.Session` per client, explicit timeouts, errors mapped to
    :class:`ProviderError`; error texts carry the provider's message, never a secret."""

    #: where files may be fetched from; a mirror's own policy once connected to it
    outbound: OutboundPolicy = OutboundPolicy()

    def __init__(self, *, session: requests.Session | None = None,
                 timeout: tuple[float, float] = (3.05, 15.0)) -> None:
        self.session = session or requests.Session()
        self.timeout = timeout

    def _call(self, operation: str, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise ProviderError(type(exc).__name__, operation=operation,
                                retryable=True) from None
        if response.status_code >= 400:
            problem = _problem(response)
            retryable = response.status_code >= 500 or response.status_code == 429
            cls = ProviderError if retryable else ProviderRejected
            raise cls(f"HTTP {response.status_code} {problem}".strip(), operation=operation,
                      status=response.status_code, retryable=retryable)
        return response

    def _json(self, operation: str, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        response = self._call(operation, method, url, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise ProviderError("answer is not JSON", operation=operation,
                                status=response.status_code) from None
        return data if isinstance(data, dict) else {"data": data}

    def _fetch(self, operation: str, url: str, max_bytes: int, size: int | None, *,
               trusted: tuple[str, ...] = (), headers: Mapping[str, str] | None = None,
               ) -> tuple[bytes, str | None]:
        """GET a file within :attr:`outbound` (http(s) only, no private target but the
        ``trusted`` hosts the operator configured, each redirect checked, one time
        budget), streaming, stopping past ``max_bytes``; (bytes, content type)."""
        return self.outbound.fetch(self.session, url, max_bytes=max_bytes, size=size,
                                   headers=headers, trusted=trusted, timeout=self.timeout,
                                   operation=operation)

    def close(self) -> None:
        self.session.close()


class HttpAdapter(HttpClient, ChannelAdapter):
    """A channel adapter that talks HTTP (all of ours)."""


def _problem(response: requests.Response) -> str:
    """The provider's own short error text (Graph ``error.message``, uazapi ``error``)."""
    try:
        data = response.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            details = (error.get("error_data") or {}).get("details")
            return str(details or error.get("message") or "")[:200]
        if error:
            return str(error)[:200]
        return str(data.get("message") or "")[:200]
    return ""


class SharedSecretWebhooks:
    """Verification for providers that sign nothing (360dialog's number webhooks, Z-PRO):
    the webhook must carry a secret we chose, in a header set in the provider's panel
    (``secret_header``, a ``Bearer`` prefix allowed) or as ``?token=`` in the URL."""

    webhook_secret: str | None
    insecure: bool
    secret_header: str

    @property
    def verifies(self) -> bool:
        return bool(self.webhook_secret) or self.insecure

    def verify(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str] | None = None
    ) -> bool:
        if not self.webhook_secret:
            return self.insecure
        given = header(headers, self.secret_header) or (query or {}).get("token") or ""
        if given.lower().startswith("bearer "):
            given = given[7:]
        return hmac.compare_digest(given.encode(), self.webhook_secret.encode())


def seconds(value: Any) -> float | None:
    """A provider's timestamp (a number, or digits in a string) as float seconds."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class RecentSends:
    """Texts this process sent lately, per contact: how an adapter whose provider marks
    nothing recognises its own messages when they come back as ``fromMe`` webhooks."""

    def __init__(self, ttl: float = 300.0, limit: int = 10_000) -> None:
        self.ttl = ttl
        self.limit = limit
        self._sent: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def add(self, contact: str, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._sent) >= self.limit:
                self._sent = {k: t for k, t in self._sent.items() if now - t < self.ttl}
            self._sent[(contact, text.strip())] = now

    def pop(self, contact: str, text: str) -> bool:
        """True (once) when ``text`` was sent to ``contact`` within the TTL."""
        with self._lock:
            sent = self._sent.pop((contact, text.strip()), None)
        return sent is not None and time.monotonic() - sent < self.ttl


def guess_filename(kind: str, mime_type: str | None, ref: str) -> str:
    extension = mimetypes.guess_extension((mime_type or "").split(";")[0].strip()) or ""
    return f"{kind}-{ref[-12:]}{extension}"


def as_attachment(media: MediaRef, data: bytes, content_type: str | None) -> Attachment:
    mime = (media.mime_type or content_type or "application/octet-stream").split(";")[0].strip()
    return Attachment(data, media.filename or guess_filename(media.kind, mime, media.ref), mime)
