"""The in-memory reference backend (``memory://``): the interface's guarantees in plain
Python, for users' unit tests and ours. One process only, and nothing survives it.

Every method takes one lock, which makes each one atomic; this is the simplest correct
reading of :mod:`.base` and the model the contract suite holds other backends to.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..errors import RowKeyTaken, StoreError
from .base import ContactRecord, HandoffRecord, OutboxCounts, OutboxRow, Store

QUEUED, DEAD = "queued", "dead"


@dataclass
class _Row:
    row: OutboxRow
    state: str = QUEUED


@dataclass
class _Schedule:
    """One contact with queued rows: when it is due, and who holds its claim."""

    next_attempt_at: float
    claimed_by: str | None = None
    claim_expires_at: float | None = None


class MemoryStore(Store):
    """Everything in dictionaries behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._contacts: dict[str, ContactRecord] = {}
        self._last_message_ids: dict[str, int] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._rows: dict[str, _Row] = {}  # by key, in enqueue order (dicts keep it)
        self._schedule: dict[str, _Schedule] = {}
        self._unique: dict[str, float] = {}  # unique key -> first seen at
        self._seen: dict[str, float] = {}
        self._handoffs: dict[str, HandoffRecord] = {}
        self._values: dict[tuple[str, str], tuple[str, float | None]] = {}
        self._ids = itertools.count(1)
        self._closed = False

    def _open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    # -- contacts ---------------------------------------------------------------------------

    def get_contact(self, key: str) -> ContactRecord | None:
        with self._lock:
            self._open()
            return self._contacts.get(key)

    def save_contact(
        self, key: str, source_id: str, contact_id: int | None, identity: str | None = None,
        *, instance: str | None = None,
    ) -> None:
        with self._lock:
            self._open()
            old = self._contacts.get(key)
            same = old is not None and old.instance == instance
            self._contacts[key] = ContactRecord(
                key, source_id, contact_id,
                old.conversation_id if same and old else None,
                identity if identity is not None else (old.identity if old else None),
                instance,
            )
            if not same:
                self._last_message_ids.pop(key, None)

    def set_conversation(self, key: str, conversation_id: int) -> None:
        with self._lock:
            self._open()
            old = self._contacts.get(key)
            if old is None:
                raise StoreError(f"set_conversation for unknown contact {key}")
            self._contacts[key] = replace(old, conversation_id=conversation_id)

    def forget_conversation(self, key: str, conversation_id: int) -> bool:
        with self._lock:
            self._open()
            old = self._contacts.get(key)
            if old is None or old.conversation_id != conversation_id:
                return False
            self._contacts[key] = replace(old, conversation_id=None)
            return True

    def set_last_message_id(self, key: str, message_id: int) -> None:
        with self._lock:
            self._open()
            if key in self._contacts:
                self._last_message_ids[key] = max(self._last_message_ids.get(key, 0),
                                                  message_id)

    def last_message_id(self, key: str) -> int | None:
        with self._lock:
            self._open()
            return self._last_message_ids.get(key)

    # -- locks ------------------------------------------------------------------------------

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        now = time.time()
        with self._lock:
            self._open()
            held = self._locks.get(name)
            if held and held[0] != owner and held[1] > now:
                return False
            self._locks[name] = (owner, now + ttl)
            return True

    def release_lock(self, name: str, owner: str) -> None:
        with self._lock:
            self._open()
            if self._locks.get(name, ("", 0.0))[0] == owner:
                del self._locks[name]

    # -- outbox -----------------------------------------------------------------------------

    def enqueue(self, rows: Sequence[OutboxRow]) -> list[bool]:
        now = time.time()
        with self._lock:
            self._open()
            if len({row.key for row in rows}) != len(rows) or any(
                    row.key in self._rows for row in rows):
                raise RowKeyTaken("enqueue: a row key is already queued")  # all or none
            flags = []
            for row in rows:
                if row.unique_key is not None and row.unique_key in self._unique:
                    flags.append(False)
                    continue
                stored = copy.copy(row)
                stored.created_at = row.created_at or now
                stored.id = row.id = next(self._ids)
                if row.unique_key is not None:
                    self._unique[row.unique_key] = stored.created_at
                self._rows[row.key] = _Row(stored)
                self._schedule.setdefault(row.contact_key, _Schedule(stored.created_at))
                flags.append(True)
            return flags

    def _queued(self, contact_key: str) -> list[OutboxRow]:
        return [r.row for r in self._rows.values()
                if r.row.contact_key == contact_key and r.state == QUEUED]

    def claim(self, owner: str, ttl: float, limit: int, now: float) -> list[OutboxRow]:
        with self._lock:
            self._open()
            due = [(s.next_attempt_at, key) for key, s in self._schedule.items()
                   if s.next_attempt_at <= now and (
                       s.claimed_by is None or (s.claim_expires_at or 0.0) < now)]
            if not due:
                return []
            contact_key = min(due)[1]
            schedule = self._schedule[contact_key]
            rows = self._queued(contact_key)[:limit]
            if not rows:  # only dead rows left: nothing to deliver
                del self._schedule[contact_key]
                return []
            lapsed = schedule.claimed_by is not None
            schedule.claimed_by, schedule.claim_expires_at = owner, now + ttl
            if lapsed:  # the previous owner's claim expired mid-delivery
                for row in rows:
                    row.uncertain = True
            return [copy.copy(row) for row in rows]

    def renew_claims(self, owners: Sequence[str], ttl: float, now: float) -> int:
        with self._lock:
            self._open()
            count = 0
            for schedule in self._schedule.values():
                if schedule.claimed_by in owners:
                    schedule.claim_expires_at = now + ttl
                    count += 1
            return count

    def _held(self, key: str, owner: str) -> _Row | None:
        item = self._rows.get(key)
        if item is None:
            return None
        schedule = self._schedule.get(item.row.contact_key)
        return item if schedule is not None and schedule.claimed_by == owner else None

    def _drop_schedule_if_empty(self, contact_key: str) -> None:
        if not self._queued(contact_key):
            self._schedule.pop(contact_key, None)

    def complete(self, key: str, owner: str, chatwoot_message_id: int | None = None) -> bool:
        with self._lock:
            self._open()
            item = self._held(key, owner)
            if item is None:
                return False
            del self._rows[key]
            if chatwoot_message_id:
                self.set_last_message_id(item.row.contact_key, chatwoot_message_id)
            self._drop_schedule_if_empty(item.row.contact_key)
            return True

    def retry_later(
        self, key: str, owner: str, at: float, error: str, *, uncertain: bool, attempt: bool
    ) -> None:
        with self._lock:
            self._open()
            item = self._held(key, owner)
            if item is None:
                return
            item.row.attempts += 1 if attempt else 0
            item.row.last_error = error
            item.row.uncertain = item.row.uncertain or uncertain
            self._schedule[item.row.contact_key] = _Schedule(at)

    def release(self, contact_key: str, owner: str) -> None:
        with self._lock:
            self._open()
            schedule = self._schedule.get(contact_key)
            if schedule is not None and schedule.claimed_by == owner:
                schedule.claimed_by = schedule.claim_expires_at = None

    def prune_seen(self, before: float) -> int:
        with self._lock:
            self._open()
            self._seen = {k: at for k, at in self._seen.items() if at >= before}
            self._values = {k: v for k, v in self._values.items()
                            if v[1] is None or v[1] >= before}
            count = len(self._unique)
            self._unique = {k: at for k, at in self._unique.items() if at >= before}
            return count - len(self._unique)

    def dead_letter(self, key: str, owner: str, reason: str) -> None:
        with self._lock:
            self._open()
            item = self._held(key, owner)
            if item is None:
                return
            item.state, item.row.last_error = DEAD, reason
            self._drop_schedule_if_empty(item.row.contact_key)

    def retry_dead(self, keys: Sequence[str] | None = None) -> int:
        now = time.time()
        with self._lock:
            self._open()
            wanted = None if keys is None else set(keys)
            count = 0
            for key, item in self._rows.items():
                if item.state == DEAD and (wanted is None or key in wanted):
                    item.state, item.row.attempts = QUEUED, 0
                    schedule = self._schedule.setdefault(item.row.contact_key, _Schedule(now))
                    schedule.next_attempt_at = min(schedule.next_attempt_at, now)
                    count += 1
            return count

    def dead_letters(self, limit: int = 100) -> list[OutboxRow]:
        with self._lock:
            self._open()
            return [copy.copy(r.row) for r in self._rows.values() if r.state == DEAD][:limit]

    def outbox_counts(self, now: float) -> OutboxCounts:
        with self._lock:
            self._open()
            queued = [r.row for r in self._rows.values() if r.state == QUEUED]
            dead = sum(1 for r in self._rows.values() if r.state == DEAD)
            in_flight = sum(1 for s in self._schedule.values()
                            if s.claimed_by is not None and (s.claim_expires_at or 0.0) >= now)
            return OutboxCounts(len(queued), min(in_flight, len(queued)), dead,
                                min((r.created_at for r in queued), default=None))

    def next_due_at(self, now: float) -> float | None:
        with self._lock:
            self._open()
            return min((s.next_attempt_at if s.claimed_by is None else
                        max(s.next_attempt_at, s.claim_expires_at or 0.0)
                        for s in self._schedule.values()), default=None)

    def has_queued_before(self, at: float) -> bool:
        with self._lock:
            self._open()
            return any(r.state == QUEUED and r.row.created_at <= at
                       for r in self._rows.values())

    # -- handoff ----------------------------------------------------------------------------

    def get_handoff(self, contact_key: str) -> HandoffRecord | None:
        with self._lock:
            self._open()
            return self._handoffs.get(contact_key)

    def put_handoff(self, record: HandoffRecord, expected_version: int | None) -> bool:
        with self._lock:
            self._open()
            current = self._handoffs.get(record.contact_key)
            if (None if current is None else current.version) != expected_version:
                return False
            self._handoffs[record.contact_key] = record
            return True

    def list_handoffs(self, state: str) -> list[HandoffRecord]:
        with self._lock:
            self._open()
            return [r for r in self._handoffs.values() if r.state == state]

    def first_seen(self, name: str, now: float) -> bool:
        with self._lock:
            self._open()
            if name in self._seen:
                return False
            self._seen[name] = now
            return True

    # -- values -----------------------------------------------------------------------------

    def get_value(self, scope: str, key: str, now: float) -> str | None:
        with self._lock:
            self._open()
            value, expires_at = self._values.get((scope, key), (None, None))
            return value if expires_at is None or expires_at > now else None

    def set_value(
        self, scope: str, key: str, value: str, expires_at: float | None = None
    ) -> None:
        with self._lock:
            self._open()
            self._values[(scope, key)] = (value, expires_at)

    def add_value(self, scope: str, key: str, value: str, now: float) -> str:
        with self._lock:
            self._open()
            held, expires_at = self._values.get((scope, key), (None, None))
            if held is not None and (expires_at is None or expires_at > now):
                return held
            self._values[(scope, key)] = (value, None)
            return value

    def delete_value(self, scope: str, key: str, expected: str | None = None) -> bool:
        with self._lock:
            self._open()
            stored = self._values.get((scope, key))
            if stored is None or (expected is not None and stored[0] != expected):
                return False
            del self._values[(scope, key)]
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
