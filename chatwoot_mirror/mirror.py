"""The Mirror facade: what a host bot calls."""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import requests

from . import redaction
from .channels import CHANNEL_SCOPE, Channel, ChannelRouter
from .client import Attachment, ChatwootClient
from .config import Config
from .conversations import ConversationResolver
from .delivery import ACTION, INCOMING, OUTGOING, RELAY, Deliverer, MirroredMessage
from .doctor import HEALTH_KEY, HEALTH_SCOPE
from .errors import ChatwootError, ConfigError, StoreError
from .handoff import Callback, Handoff, HandoffActions
from .handoff.rules import BOT_FAILURE, BOT_HANDOFF, OWNER, TRIGGER
from .identity import ContactIdentity, identify
from .media import Fetcher, MediaRef
from .metrics import Metrics
from .outbound import OutboundPolicy
from .outbox import Backoff, encode
from .pacing import Pacer
from .relay import AgentAttachment, AgentMessage, Sender
from .scoped import ScopedValues
from .store import Store, open_store
from .texts import DEFAULTS, Texts, all_default_keywords
from .triggers import BusinessHours, Keywords
from .webhooks import WebhookHandler
from .workers import DEAD, DONE, DeliveryWorkers

log = logging.getLogger("chatwoot_mirror")

# Mirrors whose threads are running. At interpreter exit their workers and scheduler are
# stopped (without draining: close() drains) so that no daemon thread is still logging
# while the interpreter finalises, which can abort the process.
_RUNNING: weakref.WeakSet[Mirror] = weakref.WeakSet()


@atexit.register
def _stop_running_mirrors() -> None:
    for mirror in list(_RUNNING):
        mirror.workers.stop(timeout=1.0)


@dataclass(frozen=True)
class Received:
    """What :meth:`Mirror.receive` did with a customer message."""

    queued: bool  # written to the outbox
    duplicate: bool  # the provider delivered this message id before: do nothing
    paused: bool  # humans have the contact (after this message's triggers)

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
        self._lock = threading.Lock()
        self._counters: dict[str, Any] = {
            "delivered": 0, "retried": 0, "dead_lettered": 0, "not_queued": 0,
            "last_error": None,
        }
        self._closed = False
        self._health: tuple[bool | None, float] = (None, 0.0)
        #: Prometheus metrics when ``CHATWOOT_METRICS=true`` (see :mod:`.metrics`)
        self.metrics: Metrics | None = None
        #: where files may be fetched from (``CHATWOOT_MEDIA_ALLOWED_HOSTS``); channel
        #: adapters connected to this mirror download through it
        self.outbound = OutboundPolicy.of(config.media_allowed_hosts,
                                          config.media_download_seconds)
        #: the channel adapters connected with :meth:`connect` (a disabled mirror still
        #: sends the bot's replies through them)
        self.channels = ChannelRouter(None)
        if not self.enabled:
            log.info("mirroring disabled (CHATWOOT_ENABLED=false)")
            return
        # Tokens and the inbox identifier travel in URLs that web servers and urllib3 log.
        redaction.install([config.bot_token or "", config.api_token or "",
                           config.webhook_secret or "", config.webhook_token or "",
                           config.hmac_token or "", config.inbox_identifier])
        self.client = client or ChatwootClient(
            config.url,
            config.inbox_identifier,
            account_id=config.account_id,
            bot_token=config.bot_token,
            api_token=config.api_token,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            session=session,
        )
        try:
            self.store = store or open_store(config.store)
        except BaseException:
            if client is None:
                self.client.close()  # ours: nothing else will close its session
            raise
        self.channels = ChannelRouter(ScopedValues(self.store, CHANNEL_SCOPE))
        self.resolver = ConversationResolver(
            self.client,
            self.store,
            resolved_policy=config.resolved_policy,
            hmac_token=config.hmac_token,
            check_ownership=config.has_bot_token,
        )
        self.deliverer = Deliverer(
            self.client,
            self.resolver,
            use_bot_token=config.has_bot_token,
            bot_prefix=config.bot_prefix,
            report_status=bool(config.api_token and config.account_id),
            relay_max_attempts=config.relay_max_attempts,
            media_max_bytes=int(config.media_max_mb * 1024 * 1024),
            language=config.language,
            media_slots=max(1, config.workers - 1),
        )
        self.handoff_state = Handoff(
            self.store, resume_after_minutes=config.resume_after_minutes,
            max_bot_turns=config.max_bot_turns,
        )
        self.handoff_state.executor = HandoffActions(
            config, self.store, notify=self.notify_customer,
            enqueue_action=self._enqueue_action,
        )
        self.workers = DeliveryWorkers(
            self.store,
            self.deliverer,
            workers=config.workers,
            claim_ttl=config.claim_ttl_seconds,
            backoff=Backoff(config.retry_base_seconds, config.retry_max_seconds),
            pacer=Pacer(config.max_requests_per_minute),
            on_result=self._on_result,
            periodic=[(60.0, self.handoff_state.resume_idle)],
        )
        self.keywords = Keywords(
            all_default_keywords() if config.handoff_keywords is None else config.handoff_keywords
        )
        self.business_hours = (
            BusinessHours.parse(config.business_hours, config.timezone)
            if config.business_hours else None
        )
        if config.has_bot_token:
            self.deliverer.on_handoff_done = self._ticket_if_nobody_is_online
        else:
            log.warning(
                "CHATWOOT_BOT_TOKEN is not set: bot replies will be posted as customer "
                "(incoming) messages prefixed with %r; create an Agent Bot in Chatwoot "
                "(Settings > Bots), connect it to the inbox and set CHATWOOT_ACCOUNT_ID and "
                "CHATWOOT_BOT_TOKEN to post them as bot replies",
                config.bot_prefix,
            )
        if config.metrics:
            self.metrics = Metrics(self.store, on_handoff=self.on_handoff,
                                   on_resume=self.on_resume)
        if start:
            try:
                self.start()
            except BaseException:
                # a mirror that cannot start holds nothing open: no session, no file
                if client is None:
                    self.client.close()
                if store is None:
                    self.store.close()
                raise

    @property
    def texts(self) -> Texts:
        """The default customer and agent texts of ``CHATWOOT_LANGUAGE``."""
        return DEFAULTS[self.config.language]

    @property
    def agent_sender(self) -> Sender | None:
        """The channel sender registered with :meth:`on_agent_message`, if any."""
        return self.deliverer.sender if self.enabled else None

    def values(self, scope: str) -> ScopedValues:
        """Named state for an integration (``scope`` names it), kept in the mirror's store
        and so shared by every process that shares the store."""
        if not self.enabled:
            raise ConfigError("CHATWOOT_ENABLED", "is false: there is no store to keep state in")
        return ScopedValues(self.store, scope)

    @property
    def closed(self) -> bool:
        """True after :meth:`close`: nothing is queued any more."""
        return self._closed

    def start(self) -> None:
        """Start the delivery workers and the scheduler (done by the constructor unless
        ``start=False``)."""
        if self.enabled and not self._closed:
            self.workers.start()  # stops what it started if it fails
            _RUNNING.add(self)

    @classmethod
    def from_env(cls, **kwargs: Any) -> Mirror:
        """Build from the environment and ``.env`` (see :meth:`Config.from_env`)."""
        return cls(Config.from_env(), **kwargs)

    # -- identity ---------------------------------------------------------------------------

    def identify(self, contact: object) -> ContactIdentity:
        """The stable identity this mirror uses for ``contact`` (phone, JID, wa_id, BSUID)."""
        return identify(
            contact,
            br_ninth_digit=self.config.br_ninth_digit,
            default_country_code=self.config.default_country_code,
        )

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
        if not self.enabled:
            return None
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
    ) -> Received:
        """Mirror a message of the conversation and tell the bot whether to answer it.

        A customer message: like :meth:`log_incoming`, then the handoff triggers, then the
        pause state; the bot should answer unless the provider delivered ``message_id``
        before or humans have the contact. ``channel`` (a connected adapter's name) is
        where the contact's replies go from now on.

        ``owner=True``: the business typed it on its own phone. It is mirrored as the
        business's message (``texts.from_phone`` prefix) and, unless ``pause=False``,
        the bot pauses quietly like after an agent's reply.

        Never raises; when the store fails the bot answers (mirroring must not silence
        it)."""
        if owner:
            return self._owner_message(contact, text, message_id, pause)
        if channel is not None and self.enabled:
            try:
                self.channels.remember(self.identify(contact).key, channel)
            except ValueError:
                pass  # not a contact: _queue says so below
        flags = self._queue(
            contact, [(INCOMING, text, sender_name, message_id, tuple(attachments))]
        )
        duplicate = flags is not None and bool(flags) and not flags[0]
        return Received(queued=bool(flags and flags[0]), duplicate=duplicate,
                        paused=not duplicate and self.is_paused(contact))

    def _owner_message(self, contact: object, text: str, message_id: str | None,
                       pause: bool) -> Received:
        paused = pause and self.human_replied(contact)  # first: not counted as a bot turn
        flags = self._queue(contact, [(OUTGOING, self.texts.from_phone + text, None,
                                       message_id, ())], triggers=False)
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

        Returns ``answered``, ``no_reply`` or ``handed_off``. Never raises for mirroring
        trouble."""
        if failed:
            self._bot_handoff(contact, "ai_failure", None, BOT_FAILURE)
            return "handed_off"
        items = list(messages)
        for item in items:
            self._send_bot_message(contact, item, channel)
        if handoff:
            self._bot_handoff(contact, handoff, note, BOT_HANDOFF)
            return "handed_off"
        return "answered" if items else "no_reply"

    def _bot_handoff(self, contact: object, reason: str, note: str | None, kind: str) -> None:
        if not self.enabled:
            return
        try:
            identity = self.identify(contact)
            self.handoff_state.pause(identity.key, reason, kind=kind, identity=identity,
                                     note=note)
        except (ValueError, StoreError) as exc:
            log.error("handoff not recorded reason=%s error=%s", reason, exc)

    def _send_bot_message(self, contact: object, item: str | AgentAttachment,
                          channel: str | None) -> None:
        text, media = (item, ()) if isinstance(item, str) else ("", (item,))
        if self.enabled and not self._closed:
            try:
                # False here can mean the relay was queued but not its mirror copy: sending
                # directly as well would reach the customer twice
                self.notify_customer(contact, text, media=media, kind="bot", channel=channel)
                return
            except Exception as exc:  # the queue failed: answer directly rather than not at all
                log.error("bot reply not queued, sending directly channel=%s error=%s",
                          channel, exc)
        try:
            identity = self.identify(contact)
            self.channels.relay(AgentMessage(
                contact=identity, text=text, chatwoot_message_id=0, conversation_id=0,
                attachments=media, kind="bot", channel=channel))
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
    ) -> list[bool] | None:
        """Queue ``items`` in one transaction: one flag per item written (``False`` for a
        provider message id seen before), or ``None`` when nothing could be written."""
        if not self.enabled or self._closed:
            return None
        try:
            identity = self.identify(contact)
        except ValueError as exc:
            log.warning("message not mirrored: %s", exc)
            self._count("not_queued", str(exc))
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
        try:
            queued = self.store.enqueue([encode(m) for m in messages])
        except StoreError as exc:
            log.error("message not queued contact=%s error=%s", identity.key, exc)
            self._count("not_queued", str(exc))
            return None
        except Exception as exc:  # the host bot must never crash because of mirroring
            log.exception("message not queued contact=%s", identity.key)
            self._count("not_queued", type(exc).__name__)
            return None
        if not all(queued):
            log.debug("provider message seen before, not queued again contact=%s",
                      identity.key)
        self.workers.wake()
        if triggers:
            fresh = [m for m, new in zip(messages, queued, strict=True) if new]
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

    def _enqueue_action(self, identity: ContactIdentity, action: dict[str, Any]) -> None:
        try:
            self.store.enqueue([encode(MirroredMessage(
                identity=identity, direction=ACTION, content=str(action["name"]),
                action=action,
            ))])
            self.workers.wake()
        except StoreError as exc:
            log.error("handoff action not queued contact=%s error=%s", identity.key, exc)

    def _ticket_if_nobody_is_online(
        self, identity: ContactIdentity, conversation_id: int, reason: str
    ) -> None:
        """With a user token: when no agent is online, give the customer a protocol number."""
        text = self.config.text("no_agent")
        if not (self.config.api_token and text) or reason == "after_hours":
            return  # after hours the customer already got the out-of-hours text
        try:
            agents = self.client.list_agents()
        except ChatwootError as exc:
            log.warning("agents' availability unknown contact=%s error=%s", identity.key, exc)
            return
        if not any(a.get("availability_status") == "online" for a in agents):
            self.notify_customer(identity, text.format(protocol=conversation_id))

    def notify_customer(
        self, contact: object, text: str, *, media: Iterable[AgentAttachment] = (),
        kind: str = "notice", channel: str | None = None,
    ) -> bool:
        """Send ``text`` (and files by URL) to the customer through the registered channel
        sender, and mirror it as the bot's message in Chatwoot; both through the durable
        queue. ``kind="bot"`` marks the bot's own replies (they count as bot turns);
        ``channel`` names the adapter to send through (see ``integrations``)."""
        if not self.enabled or self._closed:
            return False
        identity = contact if isinstance(contact, ContactIdentity) else self.identify(contact)
        media = tuple(media)
        relayed = self._enqueue_relay(
            AgentMessage(contact=identity, text=text, chatwoot_message_id=0, conversation_id=0,
                         attachments=media, kind=kind, channel=channel),
            dedupe_id=None,
        )
        # Chatwoot takes files only as uploads; a file the bot sends by URL shows as its URL.
        shown = "\n".join(filter(None, [text, *(f"[{m.file_type}] {m.url}" for m in media)]))
        mirrored = self._queue(identity.raw or identity.key,
                               [(OUTGOING, shown, None, None, ())],
                               triggers=kind == "bot") is not None
        # With no sender registered there is nothing to relay; the notice is still mirrored.
        return (relayed or self.deliverer.sender is None) and mirrored

    def _on_result(self, outcome: str, message: MirroredMessage, error: str | None) -> None:
        name = "delivered" if outcome == DONE else "dead_lettered" if outcome == DEAD else (
            "retried"
        )
        self._count(name, error)
        if self.metrics is not None:
            self.metrics.record(name, message)
        if message.direction != RELAY:  # relays talk to the provider, not to Chatwoot
            self._remember_health(outcome == DONE, error)

    def _remember_health(self, ok: bool, error: str | None) -> None:
        """Write down how Chatwoot last answered, for ``chatwoot-mirror doctor``: when it
        changes, and at most once a minute otherwise (not a write per message)."""
        now = time.time()
        last_ok, last_at = self._health
        if last_ok == ok and now - last_at < 60.0:
            return
        self._health = (ok, now)
        try:
            self.store.set_value(HEALTH_SCOPE, HEALTH_KEY, json.dumps(
                {"at": now, "ok": ok, "error": None if ok else (error or "")[:300]}))
        except StoreError as exc:
            log.debug("chatwoot health not recorded error=%s", exc)

    def _count(self, name: str, error: str | None) -> None:
        with self._lock:
            self._counters[name] += 1
            if error:
                self._counters["last_error"] = error

    # -- handoff ----------------------------------------------------------------------------

    def is_paused(self, contact: object) -> bool:
        """True while humans have the contact: the bot should stay silent. Local state only,
        never a network call; False when mirroring is disabled or the store cannot answer."""
        if not self.enabled:
            return False
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
        if not self.enabled:
            return False
        identity = self.identify(contact)
        return self.handoff_state.pause(identity.key, reason, identity=identity,
                                        note=note).changed

    def human_replied(self, contact: object, reason: str = "owner_reply") -> bool:
        """A person answered the customer outside Chatwoot (typed on the business phone):
        pause the bot quietly, no handoff text, and count it as human activity for
        ``CHATWOOT_RESUME_AFTER_MINUTES``. ``True`` if the bot had the contact."""
        if not self.enabled:
            return False
        try:
            return self.handoff_state.pause(self.identify(contact).key, reason, kind=OWNER,
                                            human_activity=True).changed
        except (ValueError, StoreError) as exc:
            log.warning("bot not paused after a human reply error=%s", exc)
            return False

    def resume(self, contact: object) -> bool:
        """Give ``contact`` back to the bot now."""
        if not self.enabled:
            return False
        return self.handoff_state.resume(self.identify(contact).key, "explicit").changed

    def on_handoff(self, callback: Callback) -> Callback:
        """Register ``fn(contact_key, reason)`` to run after a contact is handed to humans."""
        if self.enabled:
            self.handoff_state.on_handoff.append(callback)
        return callback

    def on_resume(self, callback: Callback) -> Callback:
        """Register ``fn(contact_key, reason)`` to run after a contact is given back."""
        if self.enabled:
            self.handoff_state.on_resume.append(callback)
        return callback

    def on_agent_message(self, sender: Sender) -> Sender:
        """Register the channel sender for agents' replies: ``fn(AgentMessage) -> provider id``.

        Called from the delivery workers with retries (``CHATWOOT_RELAY_MAX_ATTEMPTS``); raise
        :class:`~chatwoot_mirror.relay.RelayRejected` when the channel refuses for good."""
        if self.enabled:
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
            channel.attach(self.values if self.enabled else None, self.outbound)
            if self.enabled:
                self.on_media_download(channel.name, channel.download)
        if self.enabled and channels and self.agent_sender != self.channels.relay:
            self.on_agent_message(self.channels.relay)
        return self.channels

    def on_media_download(self, source: str, fetch: Fetcher) -> Fetcher:
        """Register how to download files of ``source`` (an adapter's name) that customers
        sent: ``fetch(MediaRef, max_bytes) -> Attachment``, called from the delivery
        workers just before the message is posted (see :mod:`chatwoot_mirror.media`)."""
        if self.enabled:
            self.deliverer.media_fetchers[source] = fetch
        return fetch

    def relay(self, message: AgentMessage) -> bool:
        """Queue an agent's message for the customer (the webhook handler calls this)."""
        if not self.enabled or self._closed:
            return False
        # Chatwoot's message id dedupes a webhook that arrives twice
        return self._enqueue_relay(message, dedupe_id=f"chatwoot:{message.chatwoot_message_id}")

    def _enqueue_relay(self, message: AgentMessage, *, dedupe_id: str | None) -> bool:
        """Queue ``message`` for the channel sender; ``False`` when no sender is registered
        (there is nobody to send it) or ``dedupe_id`` was queued before."""
        if self.deliverer.sender is None:
            log.warning("%s not sent to the customer, no sender registered "
                        "(mirror.on_agent_message) contact=%s conversation=%s",
                        message.kind, message.contact.key, message.conversation_id)
            return False
        queued = self.store.enqueue([encode(MirroredMessage(
            identity=message.contact, direction=RELAY, content=message.text, relay=message,
            provider_message_id=dedupe_id,
        ))])
        self.workers.wake()
        return all(queued)

    def webhook_handler(self) -> WebhookHandler:
        """The framework-neutral Chatwoot webhook handler (the Flask blueprint wraps it).

        Raises :class:`~chatwoot_mirror.errors.ConfigError` when no verification is
        configured and ``CHATWOOT_WEBHOOK_INSECURE`` is not set."""
        if not self.enabled:
            raise ConfigError("CHATWOOT_ENABLED", "is false: there is nothing to hand off")
        return WebhookHandler(
            self.store,
            self.handoff_state,
            secret=self.config.webhook_secret,
            token=self.config.webhook_token,
            insecure=self.config.webhook_insecure,
            max_age=self.config.webhook_max_age_seconds,
            resume_on_unassign=self.config.resume_on_unassign,
            relay=self.relay,
            relay_templates=self.config.relay_templates,
            chatwoot_url=self.config.url,
            outbound=self.outbound,
        )

    # -- lifecycle and inspection -----------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """True once everything queued before this call is delivered or dead-lettered."""
        if not self.enabled:
            return True
        deadline = time.monotonic() + timeout
        try:
            # everything created up to now; rows carry their creation time (outbox.encode)
            target = time.time()
            self.workers.wake()
            while self.store.pending_before(target):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.workers.wait_for_progress(min(left, 0.05))
        except StoreError as exc:
            log.error("flush could not read the outbox error=%s", exc)
            return False
        return True

    def stats(self) -> dict[str, Any]:
        """``queued``, ``in_flight``, ``delivered``, ``retried``, ``dead_letters``,
        ``not_queued``, ``last_error`` (no secrets) and ``oldest_queued_age`` in seconds.

        The outbox numbers cover every process sharing the store; the counters
        (delivered, retried, ...) are this process's since it started."""
        with self._lock:
            result = dict(self._counters)
        if not self.enabled:
            return result
        now = time.time()
        counts = self.store.outbox_counts(now)
        result.update(
            queued=counts.queued,
            in_flight=counts.in_flight,
            dead_letters=counts.dead,
            oldest_queued_age=(now - counts.oldest_queued_at) if counts.oldest_queued_at else 0.0,
        )
        return result

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Messages Chatwoot refused for good, with the reason, oldest first."""
        if not self.enabled:
            return []
        return [
            {"key": r.key, "contact": r.contact_key, "created_at": r.created_at,
             "reason": r.last_error}
            for r in self.store.dead_letters(limit)
        ]

    def retry_dead(self, keys: Iterable[str] | None = None) -> int:
        """Queue dead letters again (all, or those ``keys``); returns how many."""
        if not self.enabled:
            return 0
        count = self.store.retry_dead(None if keys is None else list(keys))
        self.workers.wake()
        return count

    def close(self, timeout: float | None = None) -> None:
        """Drain for at most ``timeout`` seconds (default ``CHATWOOT_DRAIN_SECONDS``), then
        stop the workers and the scheduler. Undelivered messages stay in the store and are
        delivered by the next process that opens it. Later ``log_*`` calls return False."""
        if self._closed:
            return
        if self.enabled:
            self.flush(self.config.drain_seconds if timeout is None else timeout)
        self._closed = True
        if self.enabled:
            self.workers.stop()
            _RUNNING.discard(self)
            self.client.close()
            self.store.close()

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

