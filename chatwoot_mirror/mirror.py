"""The Mirror facade: what a host bot calls."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import requests

from . import redaction
from .activity import Activity
from .assembly import assemble, naming
from .backlog import outbox_numbers
from .bot_files import BotFiles, inline_file
from .channels import Channel, ChannelRouter
from .client import Attachment, ChatwootClient
from .config import Config
from .delivery import ACTION, BOT, INCOMING, OUTGOING, RELAY, MirroredMessage
from .errors import ConfigError, StoreError
from .handoff import Callback, HandoffActions
from .handoff.rules import BOT_FAILURE, BOT_HANDOFF, OWNER, TRIGGER
from .identity import ContactIdentity, identify
from .kinds import QUIET, UNSEEN, render
from .media import (
    INLINE_FILE,
    URL_FILE,
    Fetcher,
    MediaRef,
)
from .message_ids import RANKS, MessageIds
from .metrics import Metrics
from .outbound import OutboundPolicy
from .outbox import encode
from .relay import AgentAttachment, AgentMessage, Sender
from .scoped import ScopedValues
from .store import Store
from .texts import Texts
from .turns import BotTurns, TurnReply, TurnRunner
from .webhooks import WebhookHandler

log = logging.getLogger("chatwoot_mirror")


@dataclass(frozen=True)
class Received:
    """What :meth:`Mirror.receive` did with a customer message."""

    queued: bool  # written to the outbox
    duplicate: bool  # the provider delivered this message id before: do nothing
    paused: bool  # humans have the contact (after this message's triggers)
    #: a bot turn was queued behind it (the workers will ask the bot); ``False`` while the
    #: store is away and writes go to the spill: then the caller asks the bot at once
    turn_queued: bool = False

    @property
    def bot_should_answer(self) -> bool:
        return not (self.duplicate or self.paused)


class Mirror:
    """Mirrors a bot's exchanges into one Chatwoot conversation per contact.

    Build it once at start-up (``Mirror.from_env()`` or ``Mirror(Config(...))``); a wrong
    configuration raises :class:`~chatwoot_mirror.errors.ConfigError` there. The ``log_*``
    methods commit the messages to the local outbox and return at once; background workers
    deliver them in order per contact, retrying through Chatwoot outages. They never raise:
    ``False`` means the message could not even be written down locally (logged, counted).
    """

    def __new__(cls, config: Config, **kwargs: Any) -> Mirror:
        # CHATWOOT_ENABLED=false gives the null object: the same API, doing nothing
        if cls is Mirror and not config.enabled:
            cls = DisabledMirror
        return super().__new__(cls)

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        client: ChatwootClient | None = None,
        session: requests.Session | None = None,
        start: bool = True,
    ) -> None:
        self.config = config
        self.enabled = config.enabled
        #: counters, metrics and Chatwoot's health as this process saw them
        self.activity = Activity()
        self._closed = False
        #: where files may be fetched from (``CHATWOOT_MEDIA_ALLOWED_HOSTS``); channel
        #: adapters connected to this mirror download through it
        self.outbound = OutboundPolicy.of(config.media_allowed_hosts,
                                          config.media_download_seconds)
        #: the channel adapters connected with :meth:`connect` (a disabled mirror still
        #: sends the bot's replies through them)
        self.channels = ChannelRouter(None)
        self._turns: BotTurns | None = None  # the queued bot turns (none when disabled)
        if not self.enabled:
            return  # a DisabledMirror (see __new__): nothing to build
        parts = assemble(config, store=store, client=client, session=session)
        self._parts = parts
        self.client, self.store, self.channels = parts.client, parts.store, parts.channels
        self.resolver, self.deliverer = parts.resolver, parts.deliverer
        self.handoff_state, self.workers = parts.handoff, parts.workers
        self.keywords, self.business_hours = parts.keywords, parts.business_hours
        actions = HandoffActions(config, self.store, notify=self.notify_customer,
                                 enqueue_action=self._enqueue_action,
                                 agents=self.client.list_agents)
        self.handoff_state.executor = actions
        parts.people.on_merge = self._queue_merge
        self.deliverer.current_person = parts.people.current
        #: provider ids <-> Chatwoot ids: replies, reactions, edits and receipts find
        #: their message through it, on any host
        self.message_ids = MessageIds(self.store, ttl=config.message_ids_days * 86400)
        self.deliverer.message_ids = self.message_ids
        self.deliverer.media_wait_seconds = config.media_wait_seconds
        self.deliverer.on_failure = self._refused
        self.deliverer.on_sent_elsewhere = self._sent_elsewhere
        self._files = BotFiles(self.outbound, config.url)
        self.deliverer.file_ready = self._files.ready
        # files the bot sends by URL, fetched within the media rules; vCards built here
        self.on_media_download(URL_FILE, self._files.fetch)
        self.on_media_download(INLINE_FILE, inline_file)
        self._turns = BotTurns(self.store, is_paused=self.is_paused, answer=lambda who, reply,
                               channel: self.answer(who, **vars(reply), channel=channel))
        self.deliverer.bot_runner = self._turns.run
        if config.has_bot_token:
            self.deliverer.on_handoff_done = actions.ticket_if_nobody_is_online
        self.activity.store = self.store
        self.activity.health = self.workers.pacer.health
        self.workers.on_result = self.activity.on_result
        if config.metrics:
            self.activity.metrics = Metrics(self.store, on_handoff=self.on_handoff,
                                            on_resume=self.on_resume,
                                            health=self.workers.pacer.health)
        if start:
            try:
                self.start()
            except BaseException:
                parts.close()  # a mirror that cannot start holds nothing open
                raise

    @property
    def metrics(self) -> Metrics | None:
        """Prometheus metrics when ``CHATWOOT_METRICS=true`` (see :mod:`.metrics`)."""
        return self.activity.metrics

    @property
    def texts(self) -> Texts:
        """The customer and agent texts: ``CHATWOOT_LANGUAGE``'s defaults, with
        ``CHATWOOT_TEXTS_FILE``'s laid over them."""
        return self.config.texts

    @property
    def agent_sender(self) -> Sender | None:
        """The channel sender registered with :meth:`on_agent_message`, if any."""
        return self.deliverer.sender

    def values(self, scope: str) -> ScopedValues:
        """Named state for an integration (``scope`` names it), kept in the mirror's store
        and so shared by every process that shares the store."""
        return ScopedValues(self.store, scope)

    @property
    def closed(self) -> bool:
        """True after :meth:`close`: nothing is queued any more."""
        return self._closed

    def start(self) -> None:
        """Start the delivery workers and the scheduler (done by the constructor unless
        ``start=False``)."""
        if not self._closed:
            self.workers.start()  # stops what it started if it fails

    @classmethod
    def from_env(cls, **kwargs: Any) -> Mirror:
        """Build from the environment and ``.env`` (see :meth:`Config.from_env`)."""
        return cls(Config.from_env(), **kwargs)

    # -- identity ---------------------------------------------------------------------------

    def identify(self, contact: object) -> ContactIdentity:
        """The stable identity this mirror uses for ``contact`` (phone, JID, wa_id, LID,
        BSUID): under the key of the person it was linked to (see :mod:`.people`). An
        identity this mirror made is returned as it is."""
        if isinstance(contact, ContactIdentity):
            return contact
        if self.enabled:
            return self._parts.people.identity(contact)
        return identify(contact, **naming(self.config))

    # -- mirroring --------------------------------------------------------------------------

    def log_exchange(
        self,
        contact: object,
        user_message: str,
        bot_response: str,
        *,
        sender_name: str | None = None,
        message_id: str | None = None,
    ) -> bool:
        """Queue one customer message and the bot's reply, in that order, in one transaction.

        ``message_id`` is the provider's id of the customer message (WhatsApp ``wamid``,
        uazapi ``messageid``): a redelivered webhook with the same id is not mirrored twice.
        """
        return self._queue(
            contact,
            [
                (INCOMING, user_message, sender_name, message_id, ()),
                (OUTGOING, bot_response, None, None, ()),
            ],
        ) is not None

    def handoff_reason(self, contact: object, text: str | None) -> str | None:
        """Whether this customer message should go to humans, and why (``keyword_detected``,
        ``after_hours``), without changing anything: call it before the bot answers."""
        if text and self.keywords.find(text):
            return "keyword_detected"
        if self.business_hours is not None and not self.business_hours.is_open(
            datetime.now(timezone.utc)
        ):
            return "after_hours"
        return None

    def log_incoming(
        self,
        contact: object,
        text: str,
        *,
        sender_name: str | None = None,
        message_id: str | None = None,
        attachments: Iterable[Attachment | MediaRef] = (),
    ) -> bool:
        """Queue a message the customer sent (shown as theirs in Chatwoot)."""
        return self._queue(
            contact, [(INCOMING, text, sender_name, message_id, tuple(attachments))]
        ) is not None

    def receive(
        self,
        contact: object,
        text: str,
        *,
        sender_name: str | None = None,
        message_id: str | None = None,
        attachments: Iterable[Attachment | MediaRef] = (),
        channel: str | None = None,
        owner: bool = False,
        pause: bool = True,
        turn: Mapping[str, Any] | None = None,
        aliases: Iterable[object] = (),
        reply_to: str | None = None,
        shown_as: str | None = None,
        raw_type: str = "",
        via: str = "phone",
    ) -> Received:
        """Mirror a message of the conversation and tell the bot whether to answer it.

        A customer message: like :meth:`log_incoming`, then the handoff triggers, then the
        pause state; the bot should answer unless the provider delivered ``message_id``
        before or humans have the contact. ``channel`` (a connected adapter's name) is
        where the contact's replies go from now on.

        ``owner=True``: the business typed it on its own phone. It is mirrored as the
        business's message (``texts.from_phone`` prefix) and, unless ``pause=False``,
        the bot pauses quietly like after an agent's reply.

        ``turn`` (JSON-able, with ``channel``): queue a bot turn behind the message, in the
        same transaction, for the runner registered for ``channel`` with
        :meth:`on_bot_turn`. It answers off the caller's thread, in order per contact, once
        per provider message id, and after a crash when the store is opened again. No
        turn is queued for a message that fires a handoff trigger.

        ``aliases``: other names the provider gave the same person in this event (the
        phone beside a LID, a BSUID beside a ``wa_id``); they are linked to one person for
        good, and ``contact`` becomes where replies go (see :mod:`.people`).

        ``reply_to``: the provider's id of the message this one quotes (or reacts to,
        edits, deletes); with a bot token it shows as a reply to that message.
        ``shown_as``: the kind of message (:mod:`.kinds`), worded for agents from ``text``
        and ``raw_type``; reactions, edits and deletes fire no trigger and queue no turn.
        ``via="api"`` with ``owner=True``: sent by another integration through the
        provider's API (``texts.from_api`` prefix), not typed on the phone.

        Never raises; when the store fails the bot answers (mirroring must not silence
        it)."""
        attachments = tuple(attachments)
        text = render(self.texts, shown_as, text, raw_type, files=bool(attachments))
        quiet = shown_as in QUIET
        if owner:
            return self._owner_message(contact, text, message_id, pause, attachments,
                                       reply_to, via)
        if self.enabled:
            try:
                # the learned identity serves the rest of this call: no second look-up
                contact = self._parts.people.learn(contact, aliases)
            except ValueError:
                pass  # not a contact: _queue says so below
        if channel is not None:
            try:
                self.channels.remember(self.identify(contact).key, channel)
            except ValueError:
                pass  # not a contact: _queue says so below
        # a spilled turn would wait for the store's return: the caller's bot answers now
        queue_turn = turn is not None and not quiet and not self.store.spilling()
        flags = self._queue(
            contact, [(INCOMING, text, sender_name, message_id, tuple(attachments))],
            turn={**(turn or {}), "channel": channel} if queue_turn else None,
            triggers=not quiet, reply_to=reply_to,
        )
        duplicate = flags is not None and bool(flags) and not flags[0]
        return Received(queued=bool(flags and flags[0]), duplicate=duplicate,
                        paused=not duplicate and self.is_paused(contact),
                        turn_queued=queue_turn and bool(flags and flags[0]))

    def on_bot_turn(self, channel: str, runner: TurnRunner) -> TurnRunner:
        """Register ``runner(turn, identity)`` for the bot turns queued with
        :meth:`receive` for ``channel``; the delivery workers call it (turns queued before
        it is registered wait for it). What the runner answers through :meth:`answer` goes
        out once, even when a crash brings the turn back (:mod:`.turns`)."""
        assert self._turns is not None  # DisabledMirror overrides this
        return self._turns.register(channel, runner)

    def _owner_message(self, contact: object, text: str, message_id: str | None,
                       pause: bool, files: tuple[Attachment | MediaRef, ...] = (),
                       reply_to: str | None = None, via: str = "phone") -> Received:
        paused = pause and self.human_replied(contact)  # first: not counted as a bot turn
        prefix = self.texts.from_api if via == "api" else self.texts.from_phone
        flags = self._queue(contact, [(OUTGOING, prefix + text, None, message_id, files)],
                            triggers=False, reply_to=reply_to)
        duplicate = flags is not None and bool(flags) and not flags[0]
        return Received(queued=bool(flags and flags[0]), duplicate=duplicate,
                        paused=paused or (not duplicate and self.is_paused(contact)))

    def answer(
        self,
        contact: object,
        messages: Iterable[str | AgentAttachment] = (),
        *,
        handoff: str | None = None,
        note: str | None = None,
        failed: bool = False,
        channel: str | None = None,
    ) -> str:
        """Send the bot's answer to a customer message, and mirror it.

        Each of ``messages`` (texts and files by URL) goes to the customer through the
        durable queue and the connected ``channel`` (see :meth:`connect`), and shows in
        Chatwoot as the bot's reply; if the queue cannot take it, it is sent at once
        rather than not at all. ``handoff`` (a reason) then hands the contact to humans
        with ``note`` for the agents; ``failed=True`` (the bot could not answer) hands
        over with reason ``ai_failure`` instead of leaving the customer without one.

        Inside a queued bot turn the answer is recorded before any of it is queued, and
        queued once however often the turn runs (:mod:`.turns`).

        Returns ``answered``, ``no_reply`` or ``handed_off``. Never raises for mirroring
        trouble."""
        reply = TurnReply(list(messages), handoff, note, failed)
        turn, reply = self._turns.settle(reply) if self._turns is not None else (None, reply)
        if reply.failed:
            self._bot_handoff(contact, "ai_failure", None, BOT_FAILURE)
            return "handed_off"
        for n, item in enumerate(reply.messages):
            self._send_bot_message(contact, item, channel,
                                   once=None if turn is None else f"{turn}:{n}")
        if reply.handoff:
            self._bot_handoff(contact, reply.handoff, reply.note, BOT_HANDOFF)
            return "handed_off"
        return "answered" if reply.messages else "no_reply"

    def _bot_handoff(self, contact: object, reason: str, note: str | None, kind: str) -> None:
        try:
            identity = self.identify(contact)
            self.handoff_state.pause(identity.key, reason, kind=kind, identity=identity,
                                     note=note)
        except (ValueError, StoreError) as exc:
            log.error("handoff not recorded reason=%s error=%s", reason, exc)

    def _send_bot_message(self, contact: object, item: str | AgentAttachment,
                          channel: str | None, once: str | None = None) -> None:
        text, media = (item, ()) if isinstance(item, str) else ("", (item,))
        if not self._closed:
            try:
                # the copy and the relay are queued together: only nothing written at all
                # (None) means the customer has no answer on its way
                if self._notify(contact, text, media, "bot", channel, once) is not None:
                    return
                log.error("bot reply not queued, sending directly channel=%s", channel)
            except Exception as exc:  # the queue failed: answer directly rather than not at all
                log.error("bot reply not queued, sending directly channel=%s error=%s",
                          channel, exc)
        self._send_directly(contact, text, media, channel)

    def _send_directly(self, contact: object, text: str,
                       media: tuple[AgentAttachment, ...], channel: str | None) -> None:
        """Through the channel at once, without the queue (and so without retries)."""
        try:
            self.channels.relay(AgentMessage(
                contact=self.identify(contact), text=text, chatwoot_message_id=0,
                conversation_id=0, attachments=media, kind="bot", channel=channel))
        except Exception as exc:
            log.error("bot reply not sent channel=%s error=%s", channel, exc)

    def log_outgoing(
        self,
        contact: object,
        text: str,
        *,
        message_id: str | None = None,
        attachments: Iterable[Attachment] = (),
    ) -> bool:
        """Queue a message the bot sent to the customer (shown as the bot's reply)."""
        return self._queue(
            contact, [(OUTGOING, text, None, message_id, tuple(attachments))]
        ) is not None

    def _queue(
        self,
        contact: object,
        items: list[tuple[str, str, str | None, str | None, tuple[Attachment | MediaRef, ...]]],
        *,
        triggers: bool = True,
        turn: Mapping[str, Any] | None = None,
        reply_to: str | None = None,
        key: str | None = None,
        relay: MirroredMessage | None = None,
        once: str | None = None,
    ) -> list[bool] | None:
        """Queue ``items`` in one transaction: one flag per row written (``False`` for a
        provider message id seen before), or ``None`` when nothing could be written.
        ``turn``: a bot turn queued behind the (first) item, in the same transaction;
        ``relay``: the first item's send to the customer (:meth:`_relay_row`), likewise;
        ``reply_to`` and ``key`` are the first item's. ``once``: every row gets a unique
        key made of it, so queuing the same ``once`` again writes nothing."""
        if self._closed:
            return None
        try:
            identity = self.identify(contact)
        except ValueError as exc:
            log.warning("message not mirrored: %s", exc)
            self.activity.count("not_queued", str(exc))
            return None
        messages = []
        for direction, text, sender_name, message_id, files in items:
            content = "" if text is None else str(text)
            if not content.strip() and not files:
                continue  # nothing to show; an empty post would be a Chatwoot 422
            messages.append(
                MirroredMessage(
                    identity=identity,
                    direction=direction,
                    content=content,
                    sender_name=sender_name,
                    provider_message_id=message_id,
                    attachments=files,
                )
            )
        if not messages:
            return []
        if reply_to is not None or key is not None:
            messages[0] = replace(messages[0], reply_to=reply_to,
                                  key=messages[0].key if key is None else key)
        if turn is not None and not self.handoff_reason(identity.raw, messages[0].content):
            # (a trigger hands the contact over as soon as the message is queued: the bot
            # must not answer it meanwhile)
            first = messages[0].provider_message_id
            messages.append(MirroredMessage(
                identity=identity, direction=BOT, content="",
                provider_message_id=None if first is None else "bot:" + first,
                action={"name": "bot_turn", "turn": dict(turn)}))
        if relay is not None:
            messages.append(relay)
        try:
            queued = self.store.enqueue([encode(m, once=None if once is None else f"{once}:{n}")
                                         for n, m in enumerate(messages)])
        except StoreError as exc:
            log.error("message not queued contact=%s error=%s", identity.key, exc)
            self.activity.count("not_queued", str(exc))
            return None
        except Exception as exc:  # the host bot must never crash because of mirroring
            log.exception("message not queued contact=%s", identity.key)
            self.activity.count("not_queued", type(exc).__name__)
            return None
        if not all(queued):
            log.debug("provider message seen before, not queued again contact=%s",
                      identity.key)
        self.workers.wake()
        if triggers:
            fresh = [m for m, new in zip(messages, queued, strict=True)
                     if new and m.direction not in (BOT, RELAY)]
            self._apply_triggers(identity, fresh)
        return list(queued)

    def _apply_triggers(self, identity: ContactIdentity, messages: list[MirroredMessage]) -> None:
        """Hand over by keyword, outside business hours, or after too many bot turns.

        The checks are pure Python; the store is touched only when one fires (or to count
        bot turns when ``CHATWOOT_MAX_BOT_TURNS`` is set), which keeps the host path at
        one SQLite call."""
        try:
            for message in messages:
                if message.direction == INCOMING:
                    reason = self.handoff_reason(identity.raw, message.content)
                    if reason:
                        self.handoff_state.pause(identity.key, reason, kind=TRIGGER,
                                                 identity=identity)
                        return
                elif self.config.max_bot_turns:
                    if self.handoff_state.bot_turn(identity.key, identity=identity).changed:
                        return
        except StoreError as exc:
            log.error("handoff triggers not evaluated contact=%s error=%s", identity.key, exc)

    def _queue_merge(self, base: str, mergee: str) -> None:
        """Chatwoot's side of two people found to be one, behind the base's messages."""
        identity = (self.store.contact_identity(base)
                    or ContactIdentity(key=base, kind="opaque", identifier=base))
        self._enqueue_action(identity, {"name": "merge", "base": base, "mergee": mergee})

    def _enqueue_action(self, identity: ContactIdentity, action: dict[str, Any]) -> None:
        try:
            self.store.enqueue([encode(MirroredMessage(
                identity=identity, direction=ACTION, content=str(action["name"]),
                action=action,
            ))])
            self.workers.wake()
        except StoreError as exc:
            log.error("handoff action not queued contact=%s error=%s", identity.key, exc)

    def notify_customer(
        self, contact: object, text: str, *, media: Iterable[AgentAttachment] = (),
        kind: str = "notice", channel: str | None = None,
    ) -> bool:
        """Send ``text`` (and files by URL) to the customer through the registered channel
        sender, and mirror it as the bot's message in Chatwoot; both through the durable
        queue. ``kind="bot"`` marks the bot's own replies (they count as bot turns);
        ``channel`` names the adapter to send through (see ``integrations``)."""
        flags = self._notify(contact, text, tuple(media), kind, channel) or []
        # With no sender registered there is nothing to relay; the notice is still mirrored.
        return all(flags) and len(flags) == (1 if self.deliverer.sender is None else 2)

    def _notify(self, contact: object, text: str, media: tuple[AgentAttachment, ...],
                kind: str, channel: str | None, once: str | None = None) -> list[bool] | None:
        """:meth:`notify_customer`'s queuing: the copy, then the relay, in one transaction
        (flags as :meth:`_queue`'s); ``once`` as there."""
        if self._closed:
            return None
        identity = self.identify(contact)
        # the mirrored copy's key links the provider's id of the sent message to its
        # Chatwoot message, for the receipts that follow (see .message_ids)
        key = uuid.uuid4().hex
        # Chatwoot takes files only as uploads: a file the bot sends by URL is fetched by
        # the delivery worker (within the media rules) and uploaded; its link shows only
        # when that fails.
        files = tuple(MediaRef(source=URL_FILE, ref=m.url, kind=m.file_type,
                               filename=m.filename) for m in media)
        # The copy is queued before the send: whatever the send's outcome queues for the
        # contact (a refusal shown on the copy, receipts) then finds the copy ahead of it.
        relay = self._relay_row(AgentMessage(
            contact=identity, text=text, chatwoot_message_id=0, conversation_id=0,
            attachments=media, kind=kind, channel=channel, mirror_key=key))
        return self._queue(identity.raw or identity.key, [(OUTGOING, text, None, None, files)],
                           triggers=kind == "bot", key=key, once=once, relay=relay)

    def message_status(self, contact: object, provider_id: str, status: str, *,
                       error: str | None = None, others: bool = False,
                       pause: bool = False) -> bool:
        """A provider's receipt for a message we sent (a bot reply, a relayed agent
        reply): ``status`` is sent, delivered, read (played) or failed, ``error`` the
        provider's code and words. Queued behind the contact's messages; Chatwoot's copy
        of the message gets the status (``PATCH .../messages/{id}``, which needs
        ``CHATWOOT_API_TOKEN``), never backwards. Without a user token a failure becomes
        a private note and ticks are skipped. ``True`` when queued.

        ``others``: the provider's statuses also cover messages other tools sent on the
        number, which it never delivers themselves (Cloud API): a status for a message we
        neither sent nor mirrored shows in Chatwoot once, as another integration's
        (``texts.from_api`` and the ``unseen`` kind: its content is not known), and pauses
        the bot only with ``pause``."""
        status = (status or "").lower()
        status = "read" if status == "played" else status  # a voice note listened to
        if status not in RANKS or not provider_id or self._closed:
            return False
        if status != "failed" and not self.deliverer.report_status:
            # ticks need a user token (doctor says so); without one a status matters only
            # for a message another tool sent, which ours never are
            try:
                if not others or self.message_ids.known(provider_id):
                    return False
            except StoreError:
                return False
        if status == "failed":
            log.warning("message not delivered contact=%s provider_message=%s error=%s",
                        _safe_key(self, contact), provider_id, (error or "?")[:200])
            if not (self.deliverer.report_status or self.config.has_bot_token):
                return False  # no token may show it: the log line above is all
        identity = self._parts.people.of_receipt(contact, provider_id, self.message_ids)
        if identity is None:
            return False
        try:
            queued = self.store.enqueue([encode(MirroredMessage(
                identity=identity, direction=ACTION, content="status",
                # a redelivered receipt is not queued twice
                provider_message_id=f"status:{provider_id}:{status}",
                action={"name": "status", "provider_id": provider_id, "status": status,
                        "error": error, "others": others, "pause": pause}))])
        except StoreError as exc:
            log.error("message status not queued contact=%s error=%s", identity.key, exc)
            return False
        self.workers.wake()
        return bool(queued and queued[0])

    def _sent_elsewhere(self, contact: ContactIdentity, provider_id: str,
                        pause: bool) -> None:
        """A message another tool sent on the number, known only by its status: shown
        once (its provider id dedupes the statuses that follow), as outgoing."""
        self.receive(contact, "", message_id=provider_id, owner=True, via="api",
                     pause=pause, shown_as=UNSEEN)

    def _refused(self, contact: ContactIdentity, provider_id: str, status: str,
                 reason: str) -> None:
        """A send the channel refused for good, shown like a failure receipt."""
        self.message_status(contact, provider_id, status, error=reason)

    # -- handoff ----------------------------------------------------------------------------

    def is_paused(self, contact: object) -> bool:
        """True while humans have the contact: the bot should stay silent. Local state only,
        never a network call; False when mirroring is disabled or the store cannot answer."""
        try:
            return self.handoff_state.is_paused(self.identify(contact).key)
        except (ValueError, StoreError) as exc:
            log.warning("pause state unknown, bot not paused error=%s", exc)
            return False

    def handoff(
        self, contact: object, reason: str = "user_request", note: str | None = None
    ) -> bool:
        """Hand ``contact`` to humans now: the bot pauses, the customer gets the handoff text
        and, with a bot token, the conversation is opened for agents with a label, a
        ``handoff_reason`` attribute and a private note (``note``, then the transcript)."""
        identity = self.identify(contact)
        return self.handoff_state.pause(identity.key, reason, identity=identity,
                                        note=note).changed

    def human_replied(self, contact: object, reason: str = "owner_reply") -> bool:
        """A person answered the customer outside Chatwoot (typed on the business phone):
        pause the bot quietly, no handoff text, and count it as human activity for
        ``CHATWOOT_RESUME_AFTER_MINUTES``. ``True`` if the bot had the contact."""
        try:
            return self.handoff_state.pause(self.identify(contact).key, reason, kind=OWNER,
                                            human_activity=True).changed
        except (ValueError, StoreError) as exc:
            log.warning("bot not paused after a human reply error=%s", exc)
            return False

    def resume(self, contact: object) -> bool:
        """Give ``contact`` back to the bot now."""
        return self.handoff_state.resume(self.identify(contact).key, "explicit").changed

    def on_handoff(self, callback: Callback) -> Callback:
        """Register ``fn(contact_key, reason)`` to run after a contact is handed to humans."""
        self.handoff_state.on_handoff.append(callback)
        return callback

    def on_resume(self, callback: Callback) -> Callback:
        """Register ``fn(contact_key, reason)`` to run after a contact is given back."""
        self.handoff_state.on_resume.append(callback)
        return callback

    def on_agent_message(self, sender: Sender) -> Sender:
        """Register the channel sender for agents' replies: ``fn(AgentMessage) -> provider id``.

        Called from the delivery workers with retries (``CHATWOOT_RELAY_MAX_ATTEMPTS``); raise
        :class:`~chatwoot_mirror.relay.RelayRejected` when the channel refuses for good."""
        self.deliverer.sender = sender
        return sender

    def connect(self, *channels: Channel) -> ChannelRouter:
        """Send agents' replies through ``channels`` (each contact's through the one it
        last wrote through, see :meth:`receive`), let the delivery workers download the
        files customers send through them, and mask their secrets in logs. Idempotent."""
        for channel in channels:
            if not self.channels.add(channel):
                continue
            redaction.install(channel.secrets())
            channel.attach(self.values, self.outbound)
            self.on_media_download(channel.name, channel.download)
        if channels and self.agent_sender != self.channels.relay:
            self.on_agent_message(self.channels.relay)
        return self.channels

    def on_media_download(self, source: str, fetch: Fetcher) -> Fetcher:
        """Register how to download files of ``source`` (an adapter's name) that customers
        sent: ``fetch(MediaRef, max_bytes) -> Attachment``, called from the delivery
        workers just before the message is posted (see :mod:`chatwoot_mirror.media`)."""
        self.deliverer.media_fetchers[source] = fetch
        return fetch

    def relay(self, message: AgentMessage) -> bool:
        """Queue an agent's message for the customer (the webhook handler calls this)."""
        if self._closed:
            return False
        # Chatwoot's message id dedupes a webhook that arrives twice
        return self._enqueue_relay(message, dedupe_id=f"chatwoot:{message.chatwoot_message_id}")

    def _enqueue_relay(self, message: AgentMessage, *, dedupe_id: str | None) -> bool:
        """Queue ``message`` for the channel sender; ``False`` when no sender is registered
        (there is nobody to send it) or ``dedupe_id`` was queued before."""
        row = self._relay_row(message, dedupe_id)
        if row is None:
            return False
        queued = self.store.enqueue([encode(row)])
        self.workers.wake()
        return all(queued)

    def _relay_row(self, message: AgentMessage,
                   dedupe_id: str | None = None) -> MirroredMessage | None:
        """``message`` as a row for the channel sender; ``None``, said in a log line, when
        no sender is registered (there is nobody to send it)."""
        if self.deliverer.sender is None:
            log.warning("%s not sent to the customer, no sender registered "
                        "(mirror.on_agent_message) contact=%s conversation=%s",
                        message.kind, message.contact.key, message.conversation_id)
            return None
        return MirroredMessage(identity=message.contact, direction=RELAY, content=message.text,
                               relay=message, provider_message_id=dedupe_id)

    def webhook_handler(self) -> WebhookHandler:
        """The framework-neutral Chatwoot webhook handler (the Flask blueprint wraps it);
        a :class:`~chatwoot_mirror.errors.ConfigError` without any verification configured
        and without ``CHATWOOT_WEBHOOK_INSECURE``."""
        return WebhookHandler(
            self.store,
            self.handoff_state,
            secret=self.config.webhook_secret,
            token=self.config.webhook_token,
            insecure=self.config.webhook_insecure,
            max_age=self.config.webhook_max_age_seconds,
            clock_skew=self.config.event_clock_skew_seconds,
            resume_on_unassign=self.config.resume_on_unassign,
            relay=self.relay,
            relay_templates=self.config.relay_templates,
            chatwoot_url=self.config.url,
            outbound=self.outbound,
            bot_error_policy=self.config.bot_error_policy,
            bot_error_texts=self.config.bot_error_texts,
            people=self._parts.people,
        )

    # -- lifecycle and inspection -----------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """True once everything queued (or spilled) before this call is delivered or
        dead-lettered; store errors within ``timeout`` are waited out."""
        # everything created up to now; rows carry their creation time (outbox.encode)
        return self.workers.drain(time.time(), timeout)

    def stats(self) -> dict[str, Any]:
        """``queued``, ``in_flight``, ``delivered``, ``retried``, ``dead_letters``,
        ``not_queued``, ``last_error`` (no secrets) with ``last_error_at``, and
        ``oldest_queued_age`` in seconds (``None`` with ``store_error`` while the store
        cannot answer), ``spilled`` and ``oldest_spilled_age`` (writes kept in the local
        spill while Redis was away); Chatwoot's health as this process sees it:
        ``chatwoot_health`` (``ok``, ``degraded`` or ``down``) since
        ``chatwoot_health_since``, and the last request Chatwoot did not answer,
        ``chatwoot_last_error`` at ``chatwoot_last_error_at`` (times are epoch seconds).

        The outbox numbers cover every process sharing the store; the counters
        (delivered, retried, ...) are this process's since it started."""
        result = self.activity.counters()
        now = time.time()
        result.update(outbox_numbers(self.store, now))
        health = self.workers.pacer.health()
        result.update(
            chatwoot_health=health.state,
            chatwoot_health_since=health.since,
            chatwoot_last_error=health.last_error,
            chatwoot_last_error_at=health.last_error_at,
        )
        return result

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Messages Chatwoot refused for good, with the reason, oldest first."""
        return [
            {"key": r.key, "contact": r.contact_key, "created_at": r.created_at,
             "reason": r.last_error}
            for r in self.store.dead_letters(limit)
        ]

    def retry_dead(self, keys: Iterable[str] | None = None) -> int:
        """Queue dead letters again (all, or those ``keys``); returns how many."""
        count = self.store.retry_dead(None if keys is None else list(keys))
        self.workers.wake()
        return count

    def close(self, timeout: float | None = None) -> None:
        """Drain for at most ``timeout`` seconds (default ``CHATWOOT_DRAIN_SECONDS``), then
        stop the workers and the scheduler. Undelivered messages stay in the store and are
        delivered by the next process that opens it. Later ``log_*`` calls return False."""
        if self._closed:
            return
        self.flush(self.config.drain_seconds if timeout is None else timeout)
        self._closed = True
        self.workers.stop()
        self.client.close()
        self._files.close()
        self.store.close()

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DisabledMirror(Mirror):
    """What ``Mirror(config)`` is when ``CHATWOOT_ENABLED=false``: every call is a cheap
    no-op answering "nothing done" (``False``, ``None``, ``[]``), so the host's code needs
    no check of its own. It keeps no store and talks to no Chatwoot, but the bot's answers
    still reach customers through the channels connected with :meth:`connect`."""

    def __init__(self, config: Config, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        log.info("mirroring disabled (CHATWOOT_ENABLED=false)")

    @property
    def agent_sender(self) -> Sender | None:
        return None

    def values(self, scope: str) -> ScopedValues:
        raise ConfigError("CHATWOOT_ENABLED", "is false: there is no store to keep state in")

    def start(self) -> None:
        return None

    def handoff_reason(self, contact: object, text: str | None) -> str | None:
        return None

    def _queue(self, contact: object, items: list[Any], *, triggers: bool = True,
               turn: Mapping[str, Any] | None = None, reply_to: str | None = None,
               key: str | None = None, relay: MirroredMessage | None = None,
               once: str | None = None) -> None:
        return None

    def _bot_handoff(self, contact: object, reason: str, note: str | None, kind: str) -> None:
        return None

    def _send_bot_message(self, contact: object, item: str | AgentAttachment,
                          channel: str | None, once: str | None = None) -> None:
        text, media = (item, ()) if isinstance(item, str) else ("", (item,))
        self._send_directly(contact, text, media, channel)

    def notify_customer(self, contact: object, text: str, *,
                        media: Iterable[AgentAttachment] = (), kind: str = "notice",
                        channel: str | None = None) -> bool:
        return False

    def is_paused(self, contact: object) -> bool:
        return False

    def handoff(self, contact: object, reason: str = "user_request",
                note: str | None = None) -> bool:
        return False

    def human_replied(self, contact: object, reason: str = "owner_reply") -> bool:
        return False

    def resume(self, contact: object) -> bool:
        return False

    def on_handoff(self, callback: Callback) -> Callback:
        return callback

    def on_resume(self, callback: Callback) -> Callback:
        return callback

    def on_agent_message(self, sender: Sender) -> Sender:
        return sender

    def on_media_download(self, source: str, fetch: Fetcher) -> Fetcher:
        return fetch

    def on_bot_turn(self, channel: str, runner: TurnRunner) -> TurnRunner:
        return runner  # nothing is queued: the bot answers inside the request

    def connect(self, *channels: Channel) -> ChannelRouter:
        for channel in channels:
            if self.channels.add(channel):
                redaction.install(channel.secrets())
                channel.attach(None, self.outbound)  # no store: no shared state
        return self.channels

    def relay(self, message: AgentMessage) -> bool:
        return False

    def message_status(self, contact: object, provider_id: str, status: str, *,
                       error: str | None = None, others: bool = False,
                       pause: bool = False) -> bool:
        return False

    def webhook_handler(self) -> WebhookHandler:
        raise ConfigError("CHATWOOT_ENABLED", "is false: there is nothing to hand off")

    def flush(self, timeout: float = 10.0) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return self.activity.counters()

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        return []

    def retry_dead(self, keys: Iterable[str] | None = None) -> int:
        return 0

    def close(self, timeout: float | None = None) -> None:
        self._closed = True


def _safe_key(mirror: Mirror, contact: object) -> str:
    try:
        return mirror.identify(contact).key
    except ValueError:
        return "?"
