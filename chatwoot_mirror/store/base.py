"""The storage interface: primitives, each method's docstring stating its guarantee.

Domain rules (who talks to a contact, what counts as a duplicate, when a message is
ambiguous) live above this line, so that every backend stores the same things the same
way and a new backend implements no rule of its own. ``tests/test_store_contract.py``
runs one suite against every backend; a backend added later must pass it.

Implementations must be safe to call from many threads at once; SQLite also from several
processes sharing one file (gunicorn workers on one host).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..identity import ContactIdentity

#: how long unique keys and first_seen names are remembered (the workers prune older ones
#: hourly; backends with native expiry also expire them after this on their own)
SEEN_RETENTION = 7 * 24 * 3600.0

#: one write of :meth:`Store.set_values`: ``(scope, key, value, expires_at)``
ValueItem = tuple[str, str, str, "float | None"]


@dataclass(frozen=True)
class ContactRecord:
    """What we remember of a contact: its Chatwoot ids and the conversation we post to."""

    key: str
    source_id: str
    contact_id: int | None
    conversation_id: int | None
    identity: str | None = None  # JSON of the ContactIdentity, for relays
    #: the Chatwoot (URL, account, inbox) these ids came from; ``None``: unknown
    instance: str | None = None


@dataclass
class OutboxRow:
    """One queued row as the store keeps it. ``payload`` is opaque to the store.

    ``unique_key``: the store skips a row whose unique key it saw before (see
    :meth:`Store.enqueue`). ``uncertain``: the row may already have reached its consumer's
    destination (a claim on it lapsed, or a consumer said so); sticky until completed."""

    key: str
    contact_key: str
    payload: str
    unique_key: str | None = None
    created_at: float = 0.0
    attempts: int = 0
    uncertain: bool = False
    last_error: str | None = None
    id: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxCounts:
    queued: int
    in_flight: int
    dead: int
    oldest_queued_at: float | None


@dataclass(frozen=True)
class HandoffRecord:
    """Who talks to a contact, as stored. The store keeps it whole and never reads its
    fields' meaning; :mod:`chatwoot_mirror.handoff.rules` makes and changes it.

    ``state`` is ``"human"`` (bot paused) or ``"bot"``; ``changed_at`` the Chatwoot time
    of the last Chatwoot event applied (0: none); ``version`` the compare-and-set counter
    of :meth:`Store.put_handoff`."""

    contact_key: str
    state: str
    reason: str | None
    changed_at: float
    last_human_at: float | None
    conversation_id: int | None
    bot_turns: int = 0
    version: int = 0



class Store(abc.ABC):
    """Local state of the mirror: contacts, conversations, the outbox and named locks."""

    @abc.abstractmethod
    def get_contact(self, key: str) -> ContactRecord | None:
        """Non-destructively read the contact stored under ``key``, or ``None``."""

    @abc.abstractmethod
    def save_contact(
        self, key: str, source_id: str, contact_id: int | None, identity: str | None = None,
        *, instance: str | None = None,
    ) -> None:
        """Atomically insert or update the contact's ids (and identity JSON, when given),
        bound to ``instance``. A stored conversation id and last message id are kept only
        when the stored instance is the same ``instance``; otherwise both are cleared in
        the same write, so no id from another Chatwoot survives the rebinding."""

    def contact_identity(self, key: str) -> ContactIdentity | None:
        """Non-destructively read the identity stored for ``key`` (where to reach the
        customer), or ``None`` when the contact is unknown or was saved without one."""
        record = self.get_contact(key)
        if record is None or not record.identity:
            return None
        return ContactIdentity.from_json(record.identity)

    @abc.abstractmethod
    def set_conversation(self, key: str, conversation_id: int) -> None:
        """Atomically remember ``conversation_id`` as the contact's conversation.

        The contact must have been saved first."""

    @abc.abstractmethod
    def forget_conversation(self, key: str, conversation_id: int) -> bool:
        """Atomically clear the contact's conversation, only if it is still ``conversation_id``.

        Returns whether it was cleared. The compare-and-clear keeps a worker that saw a
        stale 404 from erasing a newer conversation another worker just stored."""

    @abc.abstractmethod
    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        """Atomically take the named lock for ``ttl`` seconds; ``False`` if someone holds it.

        A lock whose holder did not release it within its ttl (a crashed process) is free.
        Taking a lock one already holds renews it."""

    @abc.abstractmethod
    def release_lock(self, name: str, owner: str) -> None:
        """Atomically release the named lock if ``owner`` holds it; otherwise do nothing."""

    # -- outbox ---------------------------------------------------------------------------

    @abc.abstractmethod
    def enqueue(self, rows: Sequence[OutboxRow]) -> list[bool]:
        """Atomically append ``rows`` in order, all or none, durably (committed on return).

        A row whose ``unique_key`` was enqueued before (even if completed since, until
        :meth:`prune_seen` forgets it) is skipped; the result says, per row, whether it was
        queued. Rows get ``id``s that increase with enqueue order (within a contact, the
        order :meth:`claim` hands them out). A row ``key`` its contact already has queued
        or dead raises :class:`StoreError` and writes nothing."""

    def enqueue_moved(self, rows: Sequence[OutboxRow]) -> list[bool]:
        """As :meth:`enqueue`, for rows moved from a local spill: a row whose key was
        enqueued this way before (until :meth:`prune_seen` forgets it) is skipped, even
        when it was delivered and completed since, so a move repeated after a lost answer
        admits nothing twice. The embedded backends are never behind a spill: for them it
        is :meth:`enqueue`."""
        return self.enqueue(rows)

    @abc.abstractmethod
    def claim(self, owner: str, ttl: float, limit: int, now: float) -> list[OutboxRow]:
        """Atomically claim, for ``ttl`` seconds, up to ``limit`` queued messages of ONE contact.

        Only a contact whose oldest queued message is due (``next_attempt_at <= now``) and
        not claimed by a live owner is eligible, and its messages come oldest first: this is
        what keeps delivery in order per contact while contacts proceed in parallel. A
        row whose previous claim expired (its owner died mid-delivery) comes back, and
        stays, ``uncertain=True``: it may have reached its destination."""

    @abc.abstractmethod
    def renew_claims(self, owners: Sequence[str], ttl: float, now: float) -> int:
        """Atomically extend every claim held by one of ``owners`` to ``now + ttl``."""

    @abc.abstractmethod
    def complete(self, key: str, owner: str, chatwoot_message_id: int | None = None) -> bool:
        """Atomically remove a delivered message, only if ``owner`` still holds its claim,
        and raise the contact's last known Chatwoot message id to ``chatwoot_message_id``."""

    def complete_with_values(
        self, key: str, owner: str, chatwoot_message_id: int | None,
        values: Sequence[ValueItem],
    ) -> bool:
        """:meth:`set_values` ``values`` (what the delivery learnt: where the message is),
        then :meth:`complete`; a backend may send both in one round trip. The values are
        stored whether or not ``owner`` still holds the claim (they describe a delivery
        that happened); on a failure either part may be missing, and both are idempotent:
        the row stays queued, and its redelivery finds the message and stores them again."""
        self.set_values(values)
        return self.complete(key, owner, chatwoot_message_id)

    @abc.abstractmethod
    def retry_later(
        self, key: str, owner: str, at: float, error: str, *, uncertain: bool, attempt: bool
    ) -> None:
        """Atomically release the claim and make the row's contact due again at ``at``.

        ``attempt`` counts a failed attempt; ``uncertain`` records that the last attempt may
        have reached its destination (it stays set until the row is completed)."""

    @abc.abstractmethod
    def release(self, contact_key: str, owner: str) -> None:
        """Atomically drop ``owner``'s claim on the contact without penalty; no-op otherwise."""

    @abc.abstractmethod
    def prune_seen(self, before: float) -> int:
        """Atomically forget unique keys and :meth:`first_seen` names first seen before
        ``before``, and values that expired before it; returns how many unique keys."""

    @abc.abstractmethod
    def dead_letter(self, key: str, owner: str, reason: str) -> None:
        """Atomically move a claimed message to the dead letters with ``reason``.

        Dead letters never block the contact's later messages and stay until retried."""

    @abc.abstractmethod
    def retry_dead(self, keys: Sequence[str] | None = None) -> int:
        """Atomically queue dead letters again (all, or ``keys``), due now; returns how many."""

    @abc.abstractmethod
    def dead_letters(self, limit: int = 100) -> list[OutboxRow]:
        """Non-destructively read up to ``limit`` dead letters, oldest first."""

    @abc.abstractmethod
    def outbox_counts(self, now: float) -> OutboxCounts:
        """Non-destructively count queued, in-flight (live claims) and dead messages."""

    @abc.abstractmethod
    def next_due_at(self, now: float) -> float | None:
        """Non-destructively read when the earliest claimable message is due, or ``None``."""

    @abc.abstractmethod
    def has_queued_before(self, at: float) -> bool:
        """Non-destructively tell whether any queued (not dead) row was created at or before
        ``at`` (what :meth:`Mirror.flush` waits on)."""

    @abc.abstractmethod
    def set_last_message_id(self, key: str, message_id: int) -> None:
        """Atomically raise the contact's highest known Chatwoot message id to ``message_id``."""

    @abc.abstractmethod
    def last_message_id(self, key: str) -> int | None:
        """Non-destructively read the contact's highest known Chatwoot message id."""

    # -- handoff ----------------------------------------------------------------------------

    @abc.abstractmethod
    def get_handoff(self, contact_key: str) -> HandoffRecord | None:
        """Non-destructively read the contact's handoff record (``None``: none stored)."""

    @abc.abstractmethod
    def put_handoff(self, record: HandoffRecord, expected_version: int | None) -> bool:
        """Atomically store ``record`` whole, only if the stored record's version is still
        ``expected_version`` (``None``: only if none is stored): a compare-and-set, so
        two writers that read the same record cannot both win. ``False`` when it lost."""

    @abc.abstractmethod
    def list_handoffs(self, state: str) -> list[HandoffRecord]:
        """Non-destructively list every handoff record whose ``state`` equals ``state``."""

    @abc.abstractmethod
    def first_seen(self, name: str, now: float) -> bool:
        """Atomically record ``name`` as seen at ``now``; ``False`` if it was recorded
        before (and not yet forgotten by :meth:`prune_seen`)."""

    # -- integration state -------------------------------------------------------------------

    @abc.abstractmethod
    def get_value(self, scope: str, key: str, now: float) -> str | None:
        """Non-destructively read the value stored under ``(scope, key)``; ``None`` when
        there is none or it expired at or before ``now``."""

    @abc.abstractmethod
    def set_value(
        self, scope: str, key: str, value: str, expires_at: float | None = None
    ) -> None:
        """Atomically store ``value`` under ``(scope, key)``, replacing any earlier value
        and its expiry; committed (visible to every process) when this returns."""

    def set_values(self, items: Sequence[tuple[str, str, str, float | None]]) -> None:
        """Store each ``(scope, key, value, expires_at)`` as :meth:`set_value` does, in
        order; a backend may send them in one round trip. On a failure some may be stored
        and others not (each is idempotent: storing them all again is safe)."""
        for scope, key, value, expires_at in items:
            self.set_value(scope, key, value, expires_at)

    @abc.abstractmethod
    def add_value(self, scope: str, key: str, value: str, now: float) -> str:
        """Atomically store ``value`` under ``(scope, key)``, with no expiry, unless a value
        that has not expired at ``now`` is there; returns the value held afterwards (the
        earlier one when there was one), so of concurrent callers exactly one wins and all
        learn which. Committed when this returns."""

    @abc.abstractmethod
    def delete_value(self, scope: str, key: str, expected: str | None = None) -> bool:
        """Atomically remove ``(scope, key)`` (only while it still holds ``expected``, when
        given, so a stale reader cannot delete a newer value); ``True`` if removed."""

    # -- a pace shared by several hosts --------------------------------------------------------

    def take_tokens(self, bucket: str, per_minute: float, capacity: float,
                    count: int = 1) -> float | None:
        """Atomically take ``count`` tokens from the named bucket, shared by every process
        of this store, refilled at ``per_minute`` up to ``capacity``; returns 0 when taken,
        else the seconds until they would be (nothing taken). ``None``: this store keeps
        no shared bucket, and the caller paces itself."""
        return None

    # -- a local spill (only :class:`~.spill.SpillingStore` has one) ------------------------

    #: whether writes this store cannot take go to a local spill (:mod:`.spill`)
    has_spill = False

    def spilling(self) -> bool:
        """Non-destructively tell whether writes go to a local spill right now (the store
        behind it failed and has not answered since)."""
        return False

    def spilled(self) -> tuple[int, float | None]:
        """Non-destructively count the writes a local spill holds for this store, with the
        oldest one's creation time (``None``: the spill is empty)."""
        return 0, None

    def move_spilled(self, limit: int = 200) -> int:
        """Move up to ``limit`` spilled writes into the store, each exactly once and in
        order per contact; returns how many moved (0: nothing to move, or not yet)."""
        return 0

    def maintain(self) -> None:  # noqa: B027 - optional hook
        """Non-blocking upkeep of the backend's own, run every second from a background
        job (SQLite copies its write-ahead log back into the file); never required for
        correctness, and never a domain rule."""

    def durability_warning(self) -> str | None:
        """What a restart of the backend itself would lose, in words for the operator
        (``chatwoot-mirror doctor``), or ``None`` when queued rows survive it."""
        return None

    def eviction_warning(self) -> str | None:
        """What the backend may delete on its own to free memory, in words for the operator,
        or ``None`` when it never deletes queued rows."""
        return None

    def replication(self) -> str | None:
        """The backend's replicas as the operator should know them (``None``: none apply)."""
        return None

    def data_loss(self) -> str | None:
        """Non-destructively: when and how the backend lost what it held while a mirror
        used it (a Redis restarted without persistence), in words, or ``None``."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release connections and files; the store is not used afterwards."""
