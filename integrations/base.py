"""The interface every channel adapter has, and what it hands over (the sentry-sdk
integrations pattern: one module per provider, all of the same shape).

An adapter is a small class per provider:

* ``parse(headers, body) -> list[InboundEvent]``: a provider webhook, normalized. Shapes it
  does not know are skipped with one log line, never an exception.
* ``send_text(contact, text)`` / ``send_media(contact, url_or_bytes, mime_type, caption)``:
  send to the customer, returning the provider's message id.
* ``verify(headers, body, query)``: is this webhook really from the provider?
  (``verifies`` says whether it can tell at all.)
* ``from_env(environ)``: the adapter from its environment variables.
* ``download(media, max_bytes)``: fetch a file a customer sent (see
  :mod:`chatwoot_mirror.media`), and ``relay(AgentMessage)``: send an agent's reply.

What they share lives in small private modules: the HTTP client and its errors
(:mod:`._http`), the shared-secret check (:mod:`._shared_secret`), recognising our own
echoes (:mod:`._echoes`), environment settings (:mod:`._env`), payload readers
(:mod:`._payload`) and file types (:mod:`._files`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from chatwoot_mirror.client import Attachment
from chatwoot_mirror.identity import ContactIdentity
from chatwoot_mirror.media import MediaError, MediaRef
from chatwoot_mirror.outbound import OutboundPolicy
from chatwoot_mirror.relay import AgentAttachment, AgentMessage
from chatwoot_mirror.scoped import ScopedValues

from ._files import CAPTIONED, kind_of, mime_for

MESSAGE, STATUS, ECHO, OWNER = "message", "status", "echo", "owner"
#: sent through the provider's API by another tool on the same number (a campaign
#: sender, n8n): shown as the business's message, never taken for the customer
INTEGRATION = "integration"


@dataclass(frozen=True)
class InboundEvent:
    """One thing a provider told us, normalized.

    ``kind``: ``message`` (the customer wrote), ``status`` (a receipt for one of our
    messages: ``status`` is sent/delivered/read/failed, ``error`` the provider's code and
    words), ``echo`` (our own message sent through the provider's API), ``integration``
    (another tool's, sent through the same API), ``owner`` (typed by a person on the
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
    #: other names the provider gave the same person in this event (the phone JID beside
    #: a LID chat, a BSUID beside a wa_id): the mirror links them to one person
    aliases: tuple[str, ...] = ()
    #: the provider's id of the message this one quotes, reacts to, edits or deletes
    reply_to: str | None = None
    #: how agents should read it (:mod:`chatwoot_mirror.kinds`: reaction, edit, delete,
    #: sticker, location, contacts, order, poll, unsupported); ``None``: as ``text`` says
    shown_as: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON (a queued bot turn carries it), files as their references."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)},
                "attachments": [a.to_dict() for a in self.attachments]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InboundEvent:
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in known},
                      "attachments": tuple(MediaRef.from_dict(a)
                                           for a in data.get("attachments") or ()),
                      "aliases": tuple(str(a) for a in data.get("aliases") or ())})


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


class ChannelAdapter(abc.ABC):
    """The interface of every channel adapter."""

    #: names this provider in logs and in queued file references
    name: ClassVar[str]

    @property
    def verifies(self) -> bool:
        """Whether :meth:`verify` can tell the provider's webhooks from anyone's;
        :class:`~.inbound.InboundHandler` refuses an adapter that cannot (unless it was
        built with ``insecure=True``)."""
        return True

    #: whether the provider's status webhooks also cover messages that other tools sent
    #: on the number through its API, which it never delivers themselves (Cloud API): a
    #: status for a message we did not send is then mirrored as another integration's
    #: (:meth:`Mirror.message_status <chatwoot_mirror.Mirror.message_status>`)
    mirrors_other_senders: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ChannelAdapter:
        """The adapter from its environment variables (``os.environ`` by default); a
        missing or wrong one raises :class:`~chatwoot_mirror.errors.ConfigError` naming
        it."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from the environment")

    @abc.abstractmethod
    def parse(self, headers: Mapping[str, str], body: bytes) -> list[InboundEvent]:
        """Normalize a webhook body; unknown shapes give ``[]`` and one log line."""

    @abc.abstractmethod
    def send_text(
        self, contact: str | ContactIdentity, text: str, *, reply_to: str | None = None
    ) -> str | None:
        """Send ``text`` to ``contact``; the provider's message id (``None`` if it gives
        none). ``reply_to`` is the provider's id of a message to quote, where the provider
        can quote. Raises :class:`ProviderError`."""

    @abc.abstractmethod
    def send_media(
        self,
        contact: str | ContactIdentity,
        url_or_bytes: str | bytes,
        mime_type: str,
        caption: str | None = None,
        filename: str | None = None,
        *,
        reply_to: str | None = None,
    ) -> str | None:
        """Send a file (a public URL, or the bytes) with an optional caption, quoting
        ``reply_to`` where the provider can."""

    @abc.abstractmethod
    def verify(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str] | None = None
    ) -> bool:
        """True when the webhook carries this adapter's secret (constant-time compare)."""

    def share_state(self, values: Callable[[str], ScopedValues]) -> None:  # noqa: B027
        """Called once connected to a mirror: ``values(scope)`` is state kept in the
        mirror's store, shared by every host (an adapter that remembers nothing ignores
        it)."""

    def attach(self, values: Callable[[str], ScopedValues] | None,
               outbound: OutboundPolicy) -> None:
        """Called by :meth:`Mirror.connect <chatwoot_mirror.Mirror.connect>`: the mirror's
        shared state (handed to :meth:`share_state`; ``None`` from a disabled mirror,
        which keeps none) and where files may be fetched from."""
        if values is not None:
            self.share_state(values)

    def secrets(self) -> list[str]:
        """This adapter's secrets (API key, token, webhook secret), which the mirror masks
        wherever they could be logged."""
        return [value for value in (getattr(self, name, None) for name in (
            "api_key", "token", "webhook_secret")) if isinstance(value, str) and value]

    def download(self, media: MediaRef, max_bytes: int) -> Attachment:
        """Fetch a customer's file; raises :class:`~chatwoot_mirror.media.MediaError`."""
        raise MediaError(f"{self.name} cannot download files")

    #: whether :meth:`send_text` and :meth:`send_media` take a ``track_id`` the provider
    #: keeps with the message, and :meth:`sent_before` finds a message by it: then a send
    #: tried again after a crash or a timeout is looked up first and never sent twice.
    #: Without it such a send goes out again (the customer may see it twice, never
    #: zero times).
    tracks_sends: ClassVar[bool] = False

    def sent_before(self, contact: str | ContactIdentity, track_id: str) -> str | None:
        """The provider's id of the message sent with ``track_id``, or ``None`` when there
        is none (only where :attr:`tracks_sends`). Raises :class:`ProviderError` when the
        provider cannot say: the send then waits rather than risk a second copy."""
        return None

    def relay(self, message: AgentMessage) -> str | None:
        """Send an agent's reply (or the bot's): the text, then each file. A single file
        that takes captions carries the text as its caption instead."""
        files = list(message.attachments)
        text = message.text.strip()
        caption_taken = len(files) == 1 and kind_of(mime_for(files[0])) in CAPTIONED and text
        parts: list[tuple[Callable[..., str | None], tuple[Any, ...], dict[str, Any]]] = []
        if text and not caption_taken:
            parts.append((self.send_text, (message.contact, text), {}))
        for item in files:
            parts.append((self.send_media, (message.contact, item.url, mime_for(item)),
                          {"caption": text if caption_taken else None,
                           "filename": item.filename}))
        last: str | None = None
        for n, (send, args, kwargs) in enumerate(parts):
            # only the first message sent quotes: one reply on the phone, as the agent wrote it
            kwargs["reply_to"] = message.reply_to if n == 0 else None
            track = f"{message.send_key}-{n}" if self.tracks_sends and message.send_key else None
            found = self.sent_before(message.contact, track) if (
                track and message.maybe_sent) else None
            if found:
                last = found  # an earlier try sent this part: the customer has it
                continue
            last = send(*args, **kwargs, **({"track_id": track} if track else {}))
        return last
