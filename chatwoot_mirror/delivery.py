"""Posting one mirrored message: resolve the conversation, create the message, once.

With an AgentBot token, both directions go through the Application API: the customer's
message as ``incoming`` (Chatwoot makes the contact its sender), the bot's reply as
``outgoing`` authored by the bot. Both carry our ``source_id`` (``cwm:<key>``) and a
``content_attributes`` marker, so a retry after an ambiguous failure can look the message
up exactly, and webhooks can recognise our own echoes. Without a bot token everything
goes through the public client API, which can only create ``incoming`` messages: bot
replies then carry a visible prefix, and the look-up matches on content instead.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from .client import Attachment, ChatwootClient
from .conversations import ConversationResolver, Target
from .errors import (
    AuthError,
    ChatwootError,
    Deferred,
    NotFound,
    Rejected,
    StoreError,
    Unavailable,
)
from .handoff.rules import (
    LABEL,
    LOCAL_PAUSE,
    NOTE,
    OPEN,
    PENDING,
    RESUME,
    TYPING_OFF,
    UNASSIGN,
)
from .identity import ContactIdentity
from .media import Fetcher, MediaError, MediaNotReady, MediaRef, MediaTooLarge, url_name
from .message_ids import Located, MessageIds
from .relay import AgentMessage, RelayRejected, Sender
from .store import ValueItem
from .texts import DEFAULTS, Texts

log = logging.getLogger("chatwoot_mirror.delivery")

#: Key under ``content_attributes`` that marks messages this library created.
MARKER = "chatwoot_mirror"
#: Prefix of the ``source_id`` of messages this library created through the Application API.
SOURCE_ID_PREFIX = "cwm:"
#: Chatwoot rejects longer content with a 422.
MAX_CONTENT = 150_000
_TRUNCATED = "\n[…truncated by chatwoot-mirror]"

INCOMING = "incoming"
OUTGOING = "outgoing"
RELAY = "relay"  # an agent's reply on its way to the customer
ACTION = "action"  # Chatwoot-side work of a handoff: status, label, attribute, note
BOT = "bot"  # a bot turn: the host's bot answers a customer message, off the webhook


@dataclass(frozen=True)
class MirroredMessage:
    """One message to mirror. ``key`` makes it idempotent; ``direction`` is from Chatwoot's
    point of view: ``incoming`` = the customer wrote it, ``outgoing`` = the bot did."""

    identity: ContactIdentity
    direction: str
    content: str
    sender_name: str | None = None
    provider_message_id: str | None = None
    attachments: tuple[Attachment | MediaRef, ...] = ()
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    # looked up at call time, so that clocks patched in tests (freezegun) apply
    created_at: float = field(default_factory=lambda: time.time())
    attempts: int = 0
    ambiguous: bool = False
    relay: AgentMessage | None = None
    action: dict[str, Any] | None = None
    #: the provider's id of the message this one replies to (or reacts to, edits,
    #: deletes): shown in Chatwoot as a reply to that message when we know it
    reply_to: str | None = None


class Deliverer:
    """Delivers :class:`MirroredMessage` objects to Chatwoot, one HTTP call in steady state."""

    def __init__(
        self,
        client: ChatwootClient,
        resolver: ConversationResolver,
        *,
        use_bot_token: bool,
        bot_prefix: str = "🤖 ",
        report_status: bool = False,
        relay_max_attempts: int = 5,
        media_max_bytes: int = 40 * 1024 * 1024,
        texts: Texts | None = None,
        media_slots: int = 3,
        can_merge: bool = False,
    ) -> None:
        self.client = client
        #: a user token is there: people found to be one are merged in Chatwoot
        self.can_merge = can_merge
        #: ``fn(key) -> key``: the person a contact key is now (people.People.current)
        self.current_person: Callable[[str], str] | None = None
        self._run = threading.local()  # within one claimed run: who its contact is now
        self.media_max_bytes = media_max_bytes
        # Downloads may take up to CHATWOOT_MEDIA_DOWNLOAD_SECONDS; with one worker kept
        # out of them, a slow file host never holds up every contact's texts.
        self._media_slots = threading.BoundedSemaphore(media_slots)
        self.texts = texts or DEFAULTS["pt-BR"]
        #: adapter name -> fetcher of that provider's files (``mirror.on_media_download``)
        self.media_fetchers: dict[str, Fetcher] = {}
        self.resolver = resolver
        self.use_bot_token = use_bot_token
        self.bot_prefix = bot_prefix
        self.report_status = report_status
        self.relay_max_attempts = relay_max_attempts
        self.sender: Sender | None = None
        #: ``fn(identity, conversation_id, reason)`` once a handoff's Chatwoot work is done.
        self.on_handoff_done: Callable[[ContactIdentity, int, str], None] | None = None
        #: ``fn(message)`` runs a queued bot turn (the mirror dispatches it to the bot
        #: function registered for the turn's channel)
        self.bot_runner: Callable[[MirroredMessage], None] | None = None
        # Bots take seconds (an LLM): one worker is always kept for Chatwoot and relays.
        self._bot_slots = threading.BoundedSemaphore(media_slots)
        #: provider ids <-> Chatwoot ids (replies, reactions, statuses); None: not kept
        self.message_ids: MessageIds | None = None
        #: how long a file that is not there yet is asked for again
        self.media_wait_seconds = 600.0
        #: ``fn(contact, provider_id, pause)``: a message another tool sent on the number,
        #: known only by its receipt (:meth:`Mirror.message_status`, ``others``)
        self.on_sent_elsewhere: Callable[[ContactIdentity, str, bool], object] | None = None
        #: ``fn(url) -> bool | None``: whether a file the provider will fetch by URL is
        #: there (``False``: 404, not yet; ``None``: cannot tell); None: never asked
        self.file_ready: Callable[[str], bool | None] | None = None
        #: ``fn(contact, provider_id, "failed", reason)`` queues a failure to be shown on
        #: Chatwoot's copy of a message, behind the contact's messages
        #: (:meth:`Mirror.message_status`)
        self.on_failure: Callable[..., object] | None = None

    def deliver(self, message: MirroredMessage,
                record_into: list[ValueItem] | None = None) -> dict[str, Any]:
        """Post ``message``; a 404 (conversation or contact deleted in Chatwoot) re-resolves once.

        Returns Chatwoot's message JSON. Raises :class:`~chatwoot_mirror.errors.ChatwootError`.
        Where the message landed (the id map) is stored here, or, given ``record_into``,
        appended to it for the caller to store with the row's completion.
        """
        if message.direction == RELAY:
            return self._relay(message)
        if message.direction == ACTION:
            return self._act(message)
        if message.direction == BOT:
            return self._bot_turn(message)
        if self.current_person is not None:
            # queued for a person since merged into another: it goes to that one's conversation
            person = self._person_now(message.identity.key)
            if person != message.identity.key:
                message = replace(message, identity=replace(message.identity, key=person))
        target = self.resolver.resolve(message.identity, _display_name(message))
        try:
            result = self._post(target, message)
        except NotFound:
            self.resolver.forget(message.identity, target.conversation_id)
            target = self.resolver.resolve(message.identity, _display_name(message))
            result = self._post(target, message)
        self._remember(message, target.conversation_id, result.get("id"), record_into)
        log.debug(
            "message delivered contact=%s conversation=%s direction=%s key=%s",
            message.identity.key,
            target.conversation_id,
            message.direction,
            message.key,
        )
        return result

    def _remember(self, message: MirroredMessage, conversation_id: int, chatwoot_id: object,
                  record_into: list[ValueItem] | None) -> None:
        """Note where ``message`` landed, for the replies and receipts that name it by the
        provider's id. The message is in Chatwoot whatever happens here: a store failure
        costs the link, never a second post."""
        if self.message_ids is None or not isinstance(chatwoot_id, int) or not chatwoot_id:
            return
        items = self.message_ids.posted_items(
            message.key, Located(message.identity.key, conversation_id, chatwoot_id),
            provider_id=message.provider_message_id)
        if record_into is not None:
            record_into.extend(items)
            return
        try:
            self.message_ids.store(items)
        except StoreError as exc:
            log.warning("message ids not recorded contact=%s chatwoot_message=%s error=%s",
                        message.identity.key, chatwoot_id, exc)

    @contextlib.contextmanager
    def one_run(self) -> Iterator[None]:
        """Around one claimed run of messages: the contact's record (see
        ConversationResolver.one_run) and who the contact is now are read once, not per
        message. A merge landing mid-run sends the run's rest to the older conversation of
        the same person, which Chatwoot's merge moves to the person it keeps."""
        self._run.persons = {}
        try:
            with self.resolver.one_run():
                yield
        finally:
            self._run.persons = None

    def _person_now(self, key: str) -> str:
        assert self.current_person is not None
        persons: dict[str, str] | None = getattr(self._run, "persons", None)
        if persons is None:
            return self.current_person(key)
        if key not in persons:
            persons[key] = self.current_person(key)
        return persons[key]

    def find_delivered(self, message: MirroredMessage, *, max_pages: int = 5,
                       record_into: list[ValueItem] | None = None) -> int | None:
        """After an ambiguous failure: the id of ``message`` if Chatwoot already has it
        (and, as :meth:`deliver` does, where it is: the first delivery's id-map write may
        be what failed).

        Reads the conversation's latest messages (20 a page, newest pages first) back to
        the enqueue time minus two minutes of clock skew: nothing older can be it. With a
        bot token the match is exact (our marker key). Without one it is an incoming
        message with the same content, also newer than the last message id we know we
        delivered for this contact (an earlier message with the same words is not it).
        The exact match needs no such floor, and must not stop at one: another host, or
        this one before a store timeout, may have delivered the message and moved the
        floor past it (a spilled copy moved later is uncertain, and checked here).
        """
        if message.direction in (RELAY, ACTION, BOT):
            return None  # no look-up: relays, handoff actions and bot turns are at least once
        record = self.resolver.remembered(message.identity.key)
        if record is None or record.conversation_id is None:
            return None  # never resolved in this Chatwoot, so never posted to it
        floor = 0 if self.use_bot_token else (
            self.resolver.store.last_message_id(message.identity.key) or 0)
        oldest = message.created_at - 120
        expected = self._content(message)
        before: int | None = None
        for _ in range(max_pages):
            try:
                page = self.client.list_messages_public(
                    record.source_id, record.conversation_id, before=before
                )
            except NotFound:
                return None  # not this contact's conversation (any more): not posted there
            for item in reversed(page):
                if int(item.get("id", 0)) <= floor or float(item.get("created_at") or 0) < oldest:
                    return None
                if self._matches(item, message, expected):
                    self._remember(message, record.conversation_id, int(item["id"]),
                                   record_into)
                    return int(item["id"])
            if len(page) < 20:
                return None
            before = int(page[0]["id"])
        return None

    def _bot_turn(self, message: MirroredMessage) -> dict[str, Any]:
        """The host's bot answers a queued customer message (its reply is queued in
        turn). Its failures are its own (a handoff, see :func:`handle_inbound`): only a
        missing runner or a busy slot puts the turn off."""
        if self.bot_runner is None:
            raise Deferred("no bot function registered for this channel yet", delay=1.0)
        if not self._bot_slots.acquire(blocking=False):
            raise Deferred("every bot slot is busy", delay=0.2)
        try:
            self.bot_runner(message)
        finally:
            self._bot_slots.release()
        return {"id": 0}

    def _act(self, message: MirroredMessage) -> dict[str, Any]:
        """A handoff's Chatwoot-side work, after the contact's earlier messages (same queue).

        Chatwoot's label and custom-attribute calls replace the whole set, so both are read
        first and merged; on a Chatwoot too old to let a bot read them (< 4.14.2) they are
        left alone rather than wiped."""
        action = message.action or {}
        if action.get("name") == "merge":
            return self._merge(str(action.get("base")), str(action.get("mergee")))
        if action.get("name") == "status":
            return self._status(message.identity, action)
        target = self.resolver.resolve(message.identity, _display_name(message))
        conversation = target.conversation_id
        # the decision's steps (chatwoot_mirror.handoff.rules); rows queued before
        # steps existed did every step of their kind
        steps = action.get("steps")
        if action.get("name") == "resume":
            steps = RESUME if not isinstance(steps, list) else steps
            if TYPING_OFF in steps:
                try:
                    self.client.toggle_typing_status(conversation, False)
                except AuthError:
                    pass  # Chatwoot < 4.12: bots cannot toggle typing
            if UNASSIGN in steps:
                # The bot has the customer again: an agent left assigned would tell the
                # team (and the console) that a person still has them.
                self.client.assign(conversation, None)
            if PENDING in steps:
                # Chatwoot opened it on a failed bot webhook: back to the bot's queue
                self.client.toggle_status(conversation, "pending")
            return {"id": 0}
        steps = LOCAL_PAUSE if not isinstance(steps, list) else steps
        reason = str(action.get("reason", "user_request"))
        if OPEN in steps:
            self.client.toggle_status(conversation, "open")
        if LABEL in steps:
            self._label(conversation, action, reason)
        if NOTE in steps:
            note = str(action.get("note") or "")
            transcript = self._transcript(
                target, int(action.get("turns", 10)),
                action.get("who") or ["Customer", "Bot", "Agent", "[file]"])
            self.client.create_message(
                conversation, "\n".join(filter(None, [note, transcript])), private=True,
                source_id=SOURCE_ID_PREFIX + message.key,
                content_attributes={MARKER: {"key": message.key}},
            )
        if self.on_handoff_done is not None:
            self.on_handoff_done(message.identity, conversation, reason)
        return {"id": 0}

    def _status(self, contact: ContactIdentity, action: dict[str, Any]) -> dict[str, Any]:
        """A provider's receipt, shown on Chatwoot's copy of the message: its status
        (user token), or, for a failure without one, a private note saying why. Receipts
        that arrive late never move a message back (:meth:`MessageIds.advance`). A receipt
        for a message another tool sent (``others``) shows that message, once."""
        contact_key = contact.key
        provider_id, status = str(action.get("provider_id")), str(action.get("status"))
        error = action.get("error") if isinstance(action.get("error"), str) else None
        where = None if self.message_ids is None else self.message_ids.find(provider_id)
        if where is None:
            if action.get("others") and status != "failed" and self.message_ids is not None \
                    and self.on_sent_elsewhere is not None \
                    and not self.message_ids.known(provider_id):
                self.on_sent_elsewhere(contact, provider_id, bool(action.get("pause")))
            else:
                log.debug("receipt for an unknown message contact=%s status=%s",
                          contact_key, status)
            return {"id": 0}
        person = self.current_person or (lambda key: key)
        if person(where.contact_key) != person(contact_key):
            # the provider named another customer than the message's: touch neither
            log.warning("receipt ignored, not this contact's message contact=%s "
                        "chatwoot_message=%s", contact_key, where.message_id)
            return {"id": 0}
        assert self.message_ids is not None
        if not self.message_ids.moves_forward(where.message_id, status):
            return {"id": 0}  # it already went as far: a late or repeated receipt
        reason = self.texts.failure(error) if status == "failed" else None
        if self.report_status:
            self.client.update_message_status(where.conversation_id, where.message_id,
                                              status, external_error=reason)
        elif status == "failed" and self.use_bot_token:
            self.client.create_message(
                where.conversation_id, self.texts.not_delivered.format(reason=reason),
                private=True, content_attributes={"in_reply_to": where.message_id})
        self.message_ids.advance(where.message_id, status)
        if status == "failed":
            log.info("message failed shown in chatwoot contact=%s conversation=%s "
                     "chatwoot_message=%s", contact_key, where.conversation_id,
                     where.message_id)
        return {"id": 0}

    def _merge(self, base: str, mergee: str) -> dict[str, Any]:
        """Chatwoot's side of two people found to be one (:mod:`chatwoot_mirror.people`):
        with a user token, ``contact_merge`` (the base, the older contact, stays; the
        mergee's conversations move to it); without one, a private note in the mergee's
        conversation naming the base's. One request either way; nothing when either was
        never created in Chatwoot."""
        store = self.resolver.store
        kept, gone = store.get_contact(base), store.get_contact(mergee)
        if kept is None or gone is None or kept.contact_id is None or gone.contact_id is None \
                or kept.contact_id == gone.contact_id:
            # never both created in Chatwoot (or already one contact there): nothing to do
            log.info("contacts merged base=%s mergee=%s via=store", base, mergee)
            return {"id": 0}
        if self.can_merge:
            self.client.merge_contacts(kept.contact_id, gone.contact_id)
            via = "contact_merge"
        elif self.use_bot_token and gone.conversation_id is not None \
                and kept.conversation_id is not None:
            self.client.create_message(
                gone.conversation_id,
                self.texts.same_person.format(conversation=kept.conversation_id),
                private=True)
            via = "note"
        else:
            via = "store"  # no token may write the note
        log.info("contacts merged base=%s mergee=%s contact=%s merged_contact=%s via=%s",
                 base, mergee, kept.contact_id, gone.contact_id, via)
        return {"id": 0}

    def _label(self, conversation: int, action: dict[str, Any], reason: str) -> None:
        labels = [str(label) for label in action.get("labels", [])]
        try:
            existing = self.client.get_labels(conversation)
            if any(label not in existing for label in labels):
                self.client.set_labels(conversation, existing + [
                    label for label in labels if label not in existing])
        except AuthError:
            log.info("labels not set, this Chatwoot does not let bots read them "
                     "conversation=%s", conversation)
        try:
            current = self.client.get_conversation(conversation).get("custom_attributes") or {}
            self.client.set_custom_attributes(conversation,
                                              {**current, "handoff_reason": reason})
        except AuthError:
            log.info("handoff_reason not set, this Chatwoot does not let bots read attributes "
                     "conversation=%s", conversation)

    def _transcript(self, target: Target, turns: int, who: list[str]) -> str:
        """The conversation's last ``turns`` public messages, one line each."""
        if turns <= 0:
            return ""
        customer, bot, agent, attachment = who
        lines = []
        for item in self.client.list_messages_public(target.source_id,
                                                     target.conversation_id)[-turns:]:
            sender = item.get("sender") or {}
            if item.get("message_type") == 0:
                label = customer
            else:
                label = bot if sender.get("type") == "agent_bot" else agent
            lines.append(f"{label}: {item.get('content') or attachment}")
        return "\n".join(lines)

    def _relay(self, message: MirroredMessage) -> dict[str, Any]:
        agent_message = message.relay
        if agent_message is None:
            raise Rejected("relay item without its message", operation="relay")
        if self.sender is None:
            raise Rejected("no channel sender registered (mirror.on_agent_message)",
                           operation="relay")
        agent_message = replace(self._quoting(agent_message), send_key=message.key,
                                maybe_sent=message.ambiguous or message.attempts > 0)
        ready = self._ready_files(message, agent_message)
        if ready is None:
            return {"id": 0}  # nothing left to send; the agent was told
        agent_message = ready
        try:
            provider_id = self.sender(agent_message)
        except RelayRejected as exc:
            self._refused(agent_message, str(exc)[:300])
            raise Rejected(f"channel refused: {exc}"[:300], operation="relay") from None
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"[:300]
            if message.attempts + 1 >= self.relay_max_attempts:
                self._refused(agent_message, reason)
                raise Rejected(f"channel send failed {message.attempts + 1} times: {reason}",
                               operation="relay") from None
            raise Unavailable(f"channel send failed: {reason}", operation="relay") from None
        # Accepted is not delivered: Chatwoot shows "sent" until the provider's receipts
        # say more (Mirror.message_status), or a failure that comes later.
        if provider_id:
            self._sent(agent_message, str(provider_id))
        if agent_message.chatwoot_message_id:  # an agent's (or Chatwoot's) message: news
            log.info("agent message relayed contact=%s conversation=%s chatwoot_message=%s",
                     agent_message.contact.key, agent_message.conversation_id,
                     agent_message.chatwoot_message_id)
        else:  # the bot's own reply or a notice: routine, and it has no Chatwoot ids yet
            log.debug("%s sent to the customer contact=%s", agent_message.kind,
                      agent_message.contact.key)
        return {"id": 0, "provider_message_id": provider_id}

    def _wait_for_late_file(self, message: MirroredMessage, what: str) -> None:
        """A file that is not there yet (HTTP 404: an upload still under way) is asked for
        again, sooner at first (2 s, then half its age, at most a minute), never counted
        as an attempt, until ``media_wait_seconds`` have passed; the contact's later
        messages wait behind it, in order. Returns once that time is over."""
        age = time.time() - message.created_at
        if age < self.media_wait_seconds:
            raise Deferred(f"file not there yet: {what}"[:300],
                           delay=max(2.0, min(60.0, age / 2)))

    def _ready_files(self, message: MirroredMessage,
                     agent_message: AgentMessage) -> AgentMessage | None:
        """``agent_message`` with the files the provider can fetch now. The provider
        fetches each by its URL, and with S3 direct uploads Chatwoot's webhook can come
        before the file is stored (waha#1445): a file answering 404 is waited for
        (:meth:`_wait_for_late_file`); after that the message goes without it and the
        agent is told. ``None``: nothing is left to send. Only files in Chatwoot are asked
        for (an agent's); the bot's own files by URL are its host's business."""
        if self.file_ready is None or not agent_message.attachments \
                or not agent_message.chatwoot_message_id:
            return agent_message
        missing = [f for f in agent_message.attachments if self.file_ready(f.url) is False]
        if not missing:
            return agent_message
        names = ", ".join((f.filename or url_name(f.url))[:120] or "?" for f in missing)
        self._wait_for_late_file(message, names)
        log.warning("agent file never available, not relayed contact=%s conversation=%s "
                    "chatwoot_message=%s files=%d", agent_message.contact.key,
                    agent_message.conversation_id, agent_message.chatwoot_message_id,
                    len(missing))
        reason = self.texts.file_not_ready.format(name=names)
        rest = replace(agent_message, attachments=tuple(
            f for f in agent_message.attachments if f not in missing))
        if not rest.text.strip() and not rest.attachments:
            self._refused(agent_message, reason)
            return None
        self._note(agent_message, self.texts.sent_without_file.format(reason=reason))
        return rest

    def _note(self, message: AgentMessage, text: str) -> None:
        """A private note replying to ``message`` in Chatwoot (needs the bot token: the
        public API cannot write private notes). Best effort: the relay goes on."""
        if not (self.use_bot_token and message.chatwoot_message_id):
            return
        try:
            self.client.create_message(
                message.conversation_id, text, private=True,
                content_attributes={"in_reply_to": message.chatwoot_message_id})
        except ChatwootError as exc:
            log.warning("note not written contact=%s conversation=%s error=%s",
                        message.contact.key, message.conversation_id, exc)

    def _quoting(self, message: AgentMessage) -> AgentMessage:
        """The agent quoted a message: the provider's id of it, so that the customer sees
        a WhatsApp reply (only a message of this customer's conversation)."""
        if message.in_reply_to is None or self.message_ids is None:
            return message
        try:
            provider_id = self.message_ids.provider_id(message.in_reply_to)
            where = None if provider_id is None else self.message_ids.find(provider_id)
        except StoreError:
            return message  # sent as a plain message rather than not at all
        if where is None or where.conversation_id != message.conversation_id:
            return message
        return replace(message, reply_to=provider_id)

    def _sent(self, message: AgentMessage, provider_id: str) -> None:
        """The provider took ``message`` as ``provider_id``: link it to its Chatwoot
        message for the receipts and quotes that will name it."""
        if self.message_ids is None:
            return
        try:
            if message.chatwoot_message_id:
                self.message_ids.sent(provider_id, where=Located(
                    message.contact.key, message.conversation_id, message.chatwoot_message_id))
            elif message.mirror_key:
                self.message_ids.sent(provider_id, key=message.mirror_key)
        except StoreError as exc:
            log.warning("message ids not recorded contact=%s error=%s", message.contact.key,
                        exc)

    def _refused(self, message: AgentMessage, reason: str) -> None:
        """The channel will not take ``message``: show it on Chatwoot's copy. An agent's
        message is marked at once (user token); the bot's reply (whose Chatwoot post may
        still be queued), or any message without a user token, gets a stand-in provider id
        and goes the way of an asynchronous failure: queued behind the contact's
        messages, then a failed status or a private note."""
        if self.report_status and message.chatwoot_message_id:
            self._report(message, "failed", self.texts.failure(reason))
            return
        if self.on_failure is None or not (message.chatwoot_message_id or message.mirror_key):
            return  # a notice of ours: nothing in Chatwoot to mark
        stand_in = f"refused:{uuid.uuid4().hex}"
        self._sent(message, stand_in)
        self.on_failure(message.contact, stand_in, "failed", reason)

    def _report(self, message: AgentMessage, status: str, error: str | None) -> None:
        """Tell Chatwoot what became of an agent's message (needs a user token)."""
        if not self.report_status or not message.chatwoot_message_id:
            return  # no user token, or our own notice (not a Chatwoot message)
        try:
            self.client.update_message_status(
                message.conversation_id, message.chatwoot_message_id, status,
                external_error=error,
            )
        except ChatwootError as exc:
            # The customer has (or has not) the message either way; never resend for this.
            log.warning("message status not reported conversation=%s error=%s",
                        message.conversation_id, exc)

    def _matches(self, item: dict[str, Any], message: MirroredMessage, expected: str) -> bool:
        if self.use_bot_token:
            marker = (item.get("content_attributes") or {}).get(MARKER)
            return isinstance(marker, dict) and marker.get("key") == message.key
        content = item.get("content") or ""
        return (
            item.get("message_type") == 0
            # a file that could not be uploaded adds a note after the text
            and (content.startswith(expected) if message.attachments else content == expected)
            and float(item.get("created_at") or 0) >= message.created_at - 120
        )

    def _content(self, message: MirroredMessage) -> str:
        if message.direction == OUTGOING and not self.use_bot_token:
            return _fit(self.bot_prefix + message.content)
        return _fit(message.content)

    def _files(self, message: MirroredMessage) -> tuple[list[Attachment], list[str]]:
        """The message's files as bytes, and a note for each one that cannot be uploaded.

        A provider hiccup (5xx, timeout) is retried with the message; after the third
        attempt, or on a refusal, the file becomes a note rather than holding up the
        contact's later messages."""
        if not any(isinstance(item, MediaRef) for item in message.attachments):
            return list(message.attachments), []  # type: ignore[arg-type]
        if not self._media_slots.acquire(blocking=False):
            raise Deferred("every download slot is busy", delay=1.0)
        try:
            return self._download(message)
        finally:
            self._media_slots.release()

    def _download(self, message: MirroredMessage) -> tuple[list[Attachment], list[str]]:
        files: list[Attachment] = []
        notes: list[str] = []
        for item in message.attachments:
            if not isinstance(item, MediaRef):
                files.append(item)
                continue
            fetch = self.media_fetchers.get(item.source)
            try:
                if self.media_max_bytes <= 0:
                    raise MediaTooLarge(item.size)
                if fetch is None:
                    raise MediaError(f"no media fetcher registered for {item.source!r} "
                                     "(mirror.on_media_download)", retryable=True)
                files.append(fetch(item, self.media_max_bytes))
            except MediaTooLarge as exc:
                size_mb = f"{exc.size / 1_048_576:.1f}" if exc.size else "?"
                notes.append(self.texts.media_too_large.format(kind=item.kind, size_mb=size_mb))
                if item.source == "url":
                    notes.append(self.texts.file_link.format(kind=item.kind, url=item.ref))
            except Exception as exc:
                if not isinstance(exc, MediaError):  # a fetcher's bug: same fate as a hiccup
                    log.exception("media fetcher failed contact=%s", message.identity.key)
                    exc = MediaError(type(exc).__name__, retryable=True)
                if isinstance(exc, MediaNotReady):
                    self._wait_for_late_file(message, str(exc))
                if exc.retryable and not isinstance(exc, MediaNotReady) \
                        and message.attempts < 2:
                    raise Unavailable(f"file not downloaded: {exc}"[:300],
                                      operation="download_media") from None
                log.warning("file not mirrored contact=%s kind=%s error=%s",
                            message.identity.key, item.kind, exc)
                if item.source == "url":  # the bot's file by URL: its link stands in
                    notes.append(self.texts.file_link.format(kind=item.kind, url=item.ref))
                else:
                    notes.append(self.texts.media_unavailable.format(kind=item.kind))
        return files, notes

    def _post(self, target: Target, message: MirroredMessage) -> dict[str, Any]:
        content = self._content(message)
        attachments: list[Attachment] = []
        if message.attachments:
            attachments, notes = self._files(message)
            content = "\n".join(filter(None, [content, *notes]))
        if self.use_bot_token:
            marker: dict[str, Any] = {"key": message.key}
            if message.provider_message_id:
                marker["provider_message_id"] = message.provider_message_id
            attributes: dict[str, Any] = {MARKER: marker}
            quoted = self._quoted(message, target)
            if quoted is not None:
                # Chatwoot's id, not its external-id form (chatwoot#10859)
                attributes["in_reply_to"] = quoted
            return self.client.create_message(
                target.conversation_id,
                content,
                message_type="outgoing" if message.direction == OUTGOING else "incoming",
                source_id=SOURCE_ID_PREFIX + message.key,
                content_attributes=attributes,
                attachments=attachments,
            )
        return self.client.create_incoming_message(
            target.source_id,
            target.conversation_id,
            content,
            attachments=attachments,
        )

    def _quoted(self, message: MirroredMessage, target: Target) -> int | None:
        """Chatwoot's id of the message ``message`` replies to, when it is in the same
        conversation (a provider id never leads into another customer's)."""
        if not message.reply_to or self.message_ids is None:
            return None
        try:
            where = self.message_ids.find(message.reply_to)
        except StoreError:
            return None  # shown without the link rather than not at all
        if where is None or where.conversation_id != target.conversation_id:
            return None
        return where.message_id


def _display_name(message: MirroredMessage) -> str | None:
    if message.direction == INCOMING and message.sender_name:
        return message.sender_name
    return message.identity.phone_number or message.identity.identifier


def _fit(content: str) -> str:
    if len(content) <= MAX_CONTENT:
        return content
    return content[: MAX_CONTENT - len(_TRUNCATED)] + _TRUNCATED
