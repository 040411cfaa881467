"""The glue between a provider webhook, the host's bot and the mirror.

    adapter = UazapiAdapter("https://acme.uazapi.com", token)
    for event in adapter.parse(request.headers, request.get_data()):
        handle_inbound(mirror, adapter, event, my_bot)

or, framework-neutral with verification and size limits, :class:`InboundHandler` (the
Flask blueprint in :mod:`chatwoot_mirror.integrations.flask` only translates requests for it).

The provider never waits for the bot: by default the handler queues each message with a
bot turn behind it (:func:`queue_inbound`) and answers at once; the delivery workers run the
bot, in order per contact and in parallel across contacts, and its reply goes out through
the relay. ``mode="sync"`` runs the bot inside the provider's request instead
(:func:`handle_inbound`), for hosts that want that.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from chatwoot_mirror.channels import ChannelRouter
from chatwoot_mirror.errors import ConfigError
from chatwoot_mirror.identity import ContactIdentity
from chatwoot_mirror.mirror import Mirror
from chatwoot_mirror.relay import AgentAttachment
from chatwoot_mirror.untrusted import UntrustedInput, parse_json
from chatwoot_mirror.webhooks import WebhookRequest, WebhookResponse

from .base import (
    ECHO,
    INTEGRATION,
    MESSAGE,
    OWNER,
    STATUS,
    BotFunction,
    BotReply,
    ChannelAdapter,
    InboundEvent,
)

log = logging.getLogger("chatwoot_mirror.integrations.inbound")

MAX_BYTES = 1024 * 1024
#: how :class:`InboundHandler` runs the bot
QUEUED, SYNC = "queued", "sync"


def connect(mirror: Mirror, *adapters: ChannelAdapter) -> ChannelRouter:
    """Send agents' replies through ``adapters`` and let the delivery workers download
    the files customers send through them: :meth:`Mirror.connect`, kept for callers of
    0.1. Idempotent; :func:`handle_inbound` calls it."""
    return mirror.connect(*adapters)


def handle_inbound(
    mirror: Mirror,
    adapter: ChannelAdapter,
    event: InboundEvent,
    bot_fn: BotFunction,
    *,
    handoff_on_error: bool = True,
    pause_on_owner: bool = True,
    pause_on_integration: bool = False,
) -> str:
    """Mirror ``event`` and, when the bot has the contact, answer it with ``bot_fn``.

    * ``message``: mirrored (files too); a provider redelivery is dropped; handoff
      triggers run; if humans have the contact the bot stays silent; else ``bot_fn(event)``
      answers (a string, a list of strings and files, or a :class:`BotReply`), and the
      reply is queued to the customer through ``adapter`` and mirrored as the bot's.
    * an exception in ``bot_fn`` hands the contact to humans (reason ``ai_failure``)
      instead of leaving the customer without an answer (``handoff_on_error``).
    * ``owner`` (typed on the business phone): mirrored as the business's message, and
      the bot pauses like after an agent's reply (``pause_on_owner``). ``integration``
      (another tool sent it through the provider's API): mirrored the same way, and the
      bot goes on unless ``pause_on_integration``. Neither is ever relayed back.
    * ``status``: the receipt updates Chatwoot's copy of the message
      (:meth:`Mirror.message_status`). ``echo`` (our own send): nothing to do.

    Returns what happened: ``answered``, ``no_reply``, ``duplicate``, ``paused``,
    ``handed_off``, ``bot_failed``, ``owner``, ``integration``, ``echo`` or ``status``.
    Never raises for mirroring trouble. It uses only the mirror's public API: connect,
    receive, answer, message_status.
    """
    mirror.connect(adapter)
    if event.kind == STATUS:
        if event.message_id and event.status:
            mirror.message_status(event.contact, event.message_id, event.status,
                                  error=event.error, others=adapter.mirrors_other_senders,
                                  pause=pause_on_integration)
        return STATUS
    if event.kind == ECHO:
        return ECHO  # our own send, already mirrored
    if event.kind not in (MESSAGE, OWNER, INTEGRATION):
        return "ignored"
    owner = event.kind in (OWNER, INTEGRATION)
    received = mirror.receive(
        event.contact, event.text, sender_name=None if owner else event.name,
        message_id=event.message_id, attachments=event.attachments,
        channel=adapter.name, owner=owner,
        pause=pause_on_integration if event.kind == INTEGRATION else pause_on_owner,
        aliases=event.aliases, reply_to=event.reply_to, shown_as=event.shown_as,
        raw_type=event.raw_type, via="api" if event.kind == INTEGRATION else "phone")
    if owner:
        return event.kind
    if received.duplicate:
        return "duplicate"
    if received.paused:
        return "paused"
    if not event.expects_reply:
        return "no_reply"
    return _answer(mirror, adapter, event, bot_fn, handoff_on_error)


def queue_inbound(
    mirror: Mirror,
    adapter: ChannelAdapter,
    event: InboundEvent,
    bot_fn: BotFunction,
    *,
    handoff_on_error: bool = True,
    pause_on_owner: bool = True,
    pause_on_integration: bool = False,
) -> str:
    """Like :func:`handle_inbound`, but the bot answers later, off the caller's thread.

    A customer message is mirrored with a bot turn queued behind it in one transaction;
    the delivery workers call ``bot_fn`` for it (in order per contact, in parallel across
    contacts, once per provider message id, and again after a crash before it answered),
    unless humans have the contact by then. Returns ``queued``, or what
    :func:`handle_inbound` returns for everything else (``duplicate``, ``paused``,
    ``owner``...). When the store cannot take the message, or it went to the local spill
    (Redis is away), the bot answers at once rather than after the store's return."""
    mirror.connect(adapter)
    if not mirror.enabled or event.kind != MESSAGE or not event.expects_reply:
        return handle_inbound(mirror, adapter, event, bot_fn,
                              handoff_on_error=handoff_on_error, pause_on_owner=pause_on_owner,
                              pause_on_integration=pause_on_integration)
    register_bot(mirror, adapter, bot_fn, handoff_on_error=handoff_on_error)
    received = mirror.receive(
        event.contact, event.text, sender_name=event.name, message_id=event.message_id,
        attachments=event.attachments, channel=adapter.name,
        turn={"event": event.to_dict()}, aliases=event.aliases, reply_to=event.reply_to,
        shown_as=event.shown_as, raw_type=event.raw_type)
    if received.duplicate:
        return "duplicate"
    if received.paused:
        return "paused"
    if received.turn_queued:
        return QUEUED
    return _answer(mirror, adapter, event, bot_fn, handoff_on_error)


def register_bot(mirror: Mirror, adapter: ChannelAdapter, bot_fn: BotFunction, *,
                 handoff_on_error: bool = True) -> None:
    """Let the delivery workers answer the bot turns queued for ``adapter``'s messages
    with ``bot_fn`` (:class:`InboundHandler` does it when built, so turns left queued by a
    crash are answered as soon as the host starts again)."""
    def run(turn: Mapping[str, Any], identity: ContactIdentity) -> None:
        event = InboundEvent.from_dict(turn.get("event") or {})
        if mirror.is_paused(event.contact):
            log.info("bot turn skipped, humans have the contact contact=%s", identity.key)
            return
        _answer(mirror, adapter, event, bot_fn, handoff_on_error)

    mirror.on_bot_turn(adapter.name, run)


def _answer(mirror: Mirror, adapter: ChannelAdapter, event: InboundEvent, bot_fn: BotFunction,
            handoff_on_error: bool) -> str:
    """The bot answers ``event``; its reply (or its failure's handoff) is queued."""
    try:
        reply, failed = as_reply(bot_fn(event)), False
    except Exception:
        log.exception("bot function failed provider=%s", adapter.name)
        if not handoff_on_error:
            return "bot_failed"
        reply, failed = BotReply(), True
    return mirror.answer(event.contact, reply.messages, handoff=reply.handoff, note=reply.note,
                         failed=failed, channel=adapter.name)


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


class InboundHandler:
    """A provider's webhook endpoint, framework-neutral: size limit, verification, parse,
    then :func:`queue_inbound` for each event (``mode="sync"``: :func:`handle_inbound`, the
    bot inside the provider's request). Bad input gets a 4xx, never a 5xx.

    Refuses to be built when the adapter has no way to verify webhooks, unless the
    adapter was built with ``insecure=True``."""

    def __init__(self, mirror: Mirror, adapter: ChannelAdapter, bot_fn: BotFunction, *,
                 max_bytes: int = MAX_BYTES, mode: str = QUEUED, **options: Any) -> None:
        if mode not in (QUEUED, SYNC):
            raise ConfigError(f"{adapter.name} webhook",
                              f"mode must be {QUEUED!r} or {SYNC!r}, not {mode!r}")
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
        self.inbound = queue_inbound if mode == QUEUED else handle_inbound
        mirror.connect(adapter)
        if mode == QUEUED and mirror.enabled:
            register_bot(mirror, adapter, bot_fn,
                         handoff_on_error=options.get("handoff_on_error", True))

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
                outcomes.append(self.inbound(self.mirror, self.adapter, event, self.bot_fn,
                                             **self.options))
            except Exception:
                log.exception("provider event not handled provider=%s kind=%s",
                              self.adapter.name, event.kind)
                outcomes.append("error")
        return WebhookResponse(200, {"result": "ok", "events": outcomes})
