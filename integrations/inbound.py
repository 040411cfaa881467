"""The glue between a provider webhook, the host's bot and the mirror.

    adapter = UazapiAdapter("https://acme.uazapi.com", token)
    for event in adapter.parse(request.headers, request.get_data()):
        handle_inbound(mirror, adapter, event, my_bot)

or, framework-neutral with verification and size limits, :class:`InboundHandler` (the
Flask blueprint in :mod:`chatwoot_mirror.integrations.flask` only translates requests for it).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from chatwoot_mirror import redaction
from chatwoot_mirror.errors import ConfigError, StoreError
from chatwoot_mirror.mirror import Mirror
from chatwoot_mirror.relay import AgentAttachment, AgentMessage
from chatwoot_mirror.untrusted import UntrustedInput, parse_json
from chatwoot_mirror.webhooks import WebhookRequest, WebhookResponse

from ._http import HttpClient
from .base import ECHO, MESSAGE, OWNER, STATUS, BotFunction, BotReply, ChannelAdapter, InboundEvent

log = logging.getLogger("chatwoot_mirror.integrations.inbound")

#: where an agent's reply to a contact goes: the adapter the contact last wrote through
CHANNEL_SCOPE = "channel"
MAX_BYTES = 1024 * 1024


class ChannelRouter:
    """The mirror's sender when adapters are connected: an agent's reply goes out through
    the adapter the contact last wrote through (remembered in the store, so it survives a
    restart), else through the first adapter connected."""

    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror
        self.channels = mirror.values(CHANNEL_SCOPE) if mirror.enabled else None
        self.adapters: dict[str, ChannelAdapter] = {}
        self._remembered: dict[str, str] = {}  # saves a store write per message
        self._lock = threading.Lock()

    def add(self, adapter: ChannelAdapter) -> None:
        with self._lock:
            self.adapters.setdefault(adapter.name, adapter)

    def remember(self, contact_key: str, adapter: ChannelAdapter) -> None:
        if self._remembered.get(contact_key) == adapter.name or self.channels is None:
            return
        try:
            self.channels.set(contact_key, adapter.name)
            if len(self._remembered) > 100_000:
                self._remembered.clear()  # a cache only: the store has every contact
            self._remembered[contact_key] = adapter.name
        except StoreError as exc:
            log.warning("channel of contact not stored contact=%s error=%s", contact_key, exc)

    def adapter_for(self, contact_key: str) -> ChannelAdapter:
        name = self._remembered.get(contact_key) or (
            self.channels.get(contact_key) if self.channels is not None else None)
        adapter = self.adapters.get(name or "")
        return adapter or next(iter(self.adapters.values()))

    def relay(self, message: AgentMessage) -> str | None:
        adapter = self.adapters.get(message.channel or "") or self.adapter_for(
            message.contact.key)
        return adapter.relay(message)


_routers: weakref.WeakKeyDictionary[Mirror, ChannelRouter] = weakref.WeakKeyDictionary()
_routers_lock = threading.Lock()


def connect(mirror: Mirror, *adapters: ChannelAdapter) -> ChannelRouter:
    """Send agents' replies through ``adapters`` and let the delivery workers download
    the files customers send through them. Idempotent; :func:`handle_inbound` calls it."""
    with _routers_lock:
        router = _routers.get(mirror)
        if router is None:
            router = _routers[mirror] = ChannelRouter(mirror)
    for adapter in adapters:
        if adapter.name not in router.adapters:
            router.add(adapter)
            if isinstance(adapter, HttpClient):  # downloads follow the mirror's policy
                adapter.outbound = mirror.outbound
            # provider keys and webhook secrets can travel in URLs that servers log
            redaction.install([value for value in (getattr(adapter, name, None) for name in (
                "api_key", "token", "webhook_secret")) if isinstance(value, str)])
            if mirror.enabled:
                mirror.on_media_download(adapter.name, adapter.download)
                adapter.share_state(mirror.values)
    if mirror.enabled and mirror.agent_sender != router.relay:
        mirror.on_agent_message(router.relay)
    return router


def handle_inbound(
    mirror: Mirror,
    adapter: ChannelAdapter,
    event: InboundEvent,
    bot_fn: BotFunction,
    *,
    handoff_on_error: bool = True,
    pause_on_owner: bool = True,
) -> str:
    """Mirror ``event`` and, when the bot has the contact, answer it with ``bot_fn``.

    * ``message``: mirrored (files too); a provider redelivery is dropped; handoff
      triggers run; if humans have the contact the bot stays silent; else ``bot_fn(event)``
      answers (a string, a list of strings and files, or a :class:`BotReply`), and the
      reply is queued to the customer through ``adapter`` and mirrored as the bot's.
    * an exception in ``bot_fn`` hands the contact to humans (reason ``ai_failure``)
      instead of leaving the customer without an answer (``handoff_on_error``).
    * ``owner`` (typed on the business phone): mirrored, and the bot pauses like after
      an agent's reply (``pause_on_owner``). ``echo`` and ``status``: nothing to do.

    Returns what happened: ``answered``, ``no_reply``, ``duplicate``, ``paused``,
    ``handed_off``, ``bot_failed``, ``owner``, ``echo`` or ``status``. Never raises for
    mirroring trouble.
    """
    router = connect(mirror, adapter)
    if event.kind in (STATUS, ECHO):
        return event.kind
    if event.kind == OWNER:
        if pause_on_owner:  # first, so that the message is not counted as a bot turn
            mirror.human_replied(event.contact)
        if mirror.enabled:
            prefix = mirror.texts.from_phone
            mirror.log_outgoing(event.contact, prefix + event.text, message_id=event.message_id)
        return OWNER
    if event.kind != MESSAGE:
        return "ignored"
    if mirror.enabled:
        try:
            router.remember(mirror.identify(event.contact).key, adapter)
        except ValueError:
            pass
    received = mirror.receive(event.contact, event.text, sender_name=event.name,
                              message_id=event.message_id, attachments=event.attachments)
    if received.duplicate:
        return "duplicate"
    if received.paused:
        return "paused"
    if not event.expects_reply:
        return "no_reply"
    try:
        reply = as_reply(bot_fn(event))
    except Exception:
        log.exception("bot function failed provider=%s", adapter.name)
        if handoff_on_error and mirror.enabled:
            mirror.handoff(event.contact, "ai_failure")
            return "handed_off"
        return "bot_failed"
    for item in reply.messages:
        _send(mirror, adapter, event.contact, item)
    if reply.handoff:
        mirror.handoff(event.contact, reply.handoff, note=reply.note)
        return "handed_off"
    return "answered" if reply.messages else "no_reply"


def as_reply(value: Any) -> BotReply:
    """Whatever a bot function returned, as a :class:`BotReply`."""
    if value is None:
        return BotReply()
    if isinstance(value, BotReply):
        return value
    if isinstance(value, (str, AgentAttachment)):
        value = [value]
    if not isinstance(value, Iterable):
        raise TypeError(f"bot function returned {type(value).__name__}; return a string, "
                        "a list of strings and AgentAttachment, or a BotReply")
    return BotReply(messages=[v for v in value if v])


def _send(mirror: Mirror, adapter: ChannelAdapter, contact: str,
          item: str | AgentAttachment) -> None:
    text, media = (item, ()) if isinstance(item, str) else ("", (item,))
    if mirror.enabled and not mirror.closed:
        try:
            # False here can mean the relay was queued but not its mirror copy: sending
            # directly as well would reach the customer twice
            mirror.notify_customer(contact, text, media=media, kind="bot", channel=adapter.name)
            return
        except Exception as exc:  # the queue failed: answer directly rather than not at all
            log.error("bot reply not queued, sending directly provider=%s error=%s",
                      adapter.name, exc)
    try:
        identity = mirror.identify(contact)
        adapter.relay(AgentMessage(contact=identity, text=text, chatwoot_message_id=0,
                                   conversation_id=0, attachments=media, kind="bot"))
    except Exception as exc:
        log.error("bot reply not sent provider=%s error=%s", adapter.name, exc)


class InboundHandler:
    """A provider's webhook endpoint, framework-neutral: size limit, verification, parse,
    then :func:`handle_inbound` for each event. Bad input gets a 4xx, never a 5xx.

    Refuses to be built when the adapter has no way to verify webhooks, unless the
    adapter was built with ``insecure=True``."""

    def __init__(self, mirror: Mirror, adapter: ChannelAdapter, bot_fn: BotFunction, *,
                 max_bytes: int = MAX_BYTES, **options: Any) -> None:
        if not adapter.verifies:
            raise ConfigError(
                f"{adapter.name} webhook",
                "has no verification: give the adapter webhook_secret=... (and configure "
                "the provider to send it), or insecure=True to accept unverified calls",
            )
        self.mirror = mirror
        self.adapter = adapter
        self.bot_fn = bot_fn
        self.max_bytes = max_bytes
        self.options = options
        connect(mirror, adapter)

    def handle(self, request: WebhookRequest) -> WebhookResponse:
        if len(request.body) > self.max_bytes:
            return WebhookResponse(413, {"result": "too_large"})
        if not self.adapter.verify(request.headers, request.body, request.query):
            log.warning("provider webhook rejected provider=%s reason=unverified",
                        self.adapter.name)
            return WebhookResponse(401, {"result": "unauthorized"})
        try:
            parse_json(request.body)
        except UntrustedInput as exc:
            return WebhookResponse(400, {"result": "invalid_json", "reason": exc.reason})
        try:
            events = self.adapter.parse(request.headers, request.body)
        except Exception:  # a parser bug must not turn into the provider's retry storm
            log.exception("provider webhook not parsed provider=%s", self.adapter.name)
            return WebhookResponse(400, {"result": "malformed"})
        outcomes = []
        for event in events:
            try:
                outcomes.append(handle_inbound(self.mirror, self.adapter, event, self.bot_fn,
                                               **self.options))
            except Exception:
                log.exception("provider event not handled provider=%s kind=%s",
                              self.adapter.name, event.kind)
                outcomes.append("error")
        return WebhookResponse(200, {"result": "ok", "events": outcomes})
