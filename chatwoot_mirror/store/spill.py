"""The local spill: what the host writes while its shared store (Redis) cannot take it.

:class:`SpillingStore` wraps the shared store. A write the store cannot take (down,
restarting, failing over, out of memory, slower than its timeout) is committed to a local
SQLite file instead (``CHATWOOT_MIRROR_SPILL``), and the host's call succeeds; a
background mover (:meth:`SpillingStore.move_spilled`, run by the delivery workers) puts
the spilled writes into the store as soon as it answers again, also after a restart of
the host (the file stays). Only when the spill cannot be written either (disk full,
read-only folder) does the write fail.

The spill is itself a :class:`~.sqlite.SQLiteStore` (created on its first write), so it
inherits its guarantees: atomic, durable commits shared by the processes of one host,
unique keys skipped, claims that lapse when a mover dies. What it holds:

* spilled outbox rows, queued in its own outbox under their own keys and contacts;
* spilled values (:meth:`Store.set_value`), each one row of the pseudo-contact
  ``\\0kv\\0{scope}\\0{key}`` in the same outbox (so replays keep their order), with the
  latest value also in the spill's own values, which reads see first.

Order: while the spill holds anything, every write goes to it, so nothing overtakes a
spilled row; the mover puts a contact's rows into the store before it removes them from
the spill. Exactly once: a row whose move may have half happened (the store's answer was
lost, or the mover died) is moved again marked ``uncertain`` (the delivery checks Chatwoot
before posting it) and a row whose key the store already holds is not moved twice.

Only writes spill. Reads and every other call go to the store through a circuit
(:mod:`._circuit`): after a failure they fail at once, without waiting on the store, until
a probe by the mover finds it again.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..errors import RowKeyTaken, StoreError, StoreUnavailable
from ._circuit import Circuit
from .base import ContactRecord, HandoffRecord, OutboxCounts, OutboxRow, Store, ValueItem
from .sqlite import SQLiteStore

T = TypeVar("T")

#: a spilled value's pseudo-contact in the spill's outbox (no contact key starts with NUL)
_VALUE = "\0kv\0"
#: how long a mover holds a batch; a mover that dies mid-move frees it after this
MOVE_CLAIM_SECONDS = 10.0
#: what :meth:`SpillingStore.has_queued_before` compares with to ask "anything at all"
_EVER = 1e18


class SpillingStore(Store):
    """``store`` behind a local spill at ``path`` (see the module docstring)."""

    has_spill = True

    def __init__(self, store: Store, path: str, *, circuit: Circuit | None = None) -> None:
        self.primary = store
        self.path = path
        self.circuit = circuit or Circuit()
        self._spill: SQLiteStore | None = None
        self._open_lock = threading.Lock()
        self._owner = f"spill-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        # monotonic time of the mover's last round: while it runs, only it probes an open
        # circuit, never the host's own calls
        self._mover_at = -1e9
        if os.path.exists(path):
            self._file()  # a spill left by an earlier run: moved as soon as the store answers

    # -- the spill file -----------------------------------------------------------------------

    def _file(self, create: bool = True) -> SQLiteStore | None:
        if self._spill is None and (create or os.path.exists(self.path)):
            with self._open_lock:
                if self._spill is None:
                    self._spill = SQLiteStore(self.path, busy_timeout=5.0)
        return self._spill

    def _holds_anything(self) -> bool:
        """Whether the spill holds a write not yet moved (of any process of this host)."""
        spill = self._file(create=False)
        if spill is None:
            return False
        try:
            return spill.has_queued_before(_EVER)
        except StoreError:
            return False  # an unreadable spill holds nothing this process can move

    def _spilled(self, what: str, write: Callable[[SQLiteStore], T], why: object) -> T:
        try:
            spill = self._file()
            assert spill is not None
            return write(spill)
        except StoreError as exc:
            raise StoreError(f"{what} lost: the store is unavailable ({why}) and the local "
                             f"spill at {self.path} could not be written ({exc})") from exc

    # -- the circuit ---------------------------------------------------------------------------

    def _through(self, call: Callable[[], T]) -> T:
        mover_running = time.monotonic() - self._mover_at < 2.0
        if self.circuit.is_open and (mover_running or not self.circuit.probe_due()):
            raise StoreUnavailable("store unavailable (retrying in the background)")
        try:
            result = call()
        except StoreUnavailable as exc:
            self.circuit.trip(exc)
            raise
        if self.circuit.is_open:
            self.circuit.close()
        return result

    # -- writes that spill ----------------------------------------------------------------------

    def spilling(self) -> bool:
        return self.circuit.is_open

    def enqueue(self, rows: Sequence[OutboxRow]) -> list[bool]:
        if not rows:
            return []
        why: object = "it failed a moment ago"
        if not self.circuit.is_open and not self._holds_anything():
            try:
                return self.primary.enqueue(rows)
            except StoreUnavailable as exc:
                self.circuit.trip(exc)
                if exc.maybe_applied:
                    # Redis may hold them already: moved later as maybe delivered
                    rows = [_copy(row, uncertain=True) for row in rows]
                why = exc
        elif not self.circuit.is_open:
            why = "earlier writes wait in the spill"
        return self._spilled("messages", lambda spill: spill.enqueue(rows), why)

    def set_value(
        self, scope: str, key: str, value: str, expires_at: float | None = None
    ) -> None:
        self.set_values([(scope, key, value, expires_at)])

    def set_values(self, items: Sequence[tuple[str, str, str, float | None]]) -> None:
        if not items:
            return
        why: object = "it failed a moment ago"
        if not self.circuit.is_open and not self._holds_anything():
            try:
                self.primary.set_values(items)
                return
            except StoreUnavailable as exc:
                self.circuit.trip(exc)
                why = exc  # all of them again, into the spill: each is idempotent

        def write(spill: SQLiteStore) -> None:
            rows = []
            for scope, key, value, expires_at in items:
                spill.set_value(scope, key, value, expires_at)
                body = json.dumps({"scope": scope, "key": key, "value": value,
                                   "expires_at": expires_at})
                rows.append(OutboxRow(key=uuid.uuid4().hex,
                                      contact_key=_value_name(scope, key),
                                      payload=body, created_at=time.time()))
            spill.enqueue(rows)
        self._spilled("values", write, why)

    def get_value(self, scope: str, key: str, now: float) -> str | None:
        spill = self._file(create=False)
        if spill is not None and self._holds_anything():
            try:
                value = spill.get_value(scope, key, now)
            except StoreError:
                value = None
            if value is not None:
                return value  # written while the store was away: newer than the store's
        return self._through(lambda: self.primary.get_value(scope, key, now))

    # -- moving spilled writes into the store ------------------------------------------------

    def spilled(self) -> tuple[int, float | None]:
        spill = self._file(create=False)
        if spill is None:
            return 0, None
        counts = spill.outbox_counts(time.time())
        return counts.queued, counts.oldest_queued_at

    def move_spilled(self, limit: int = 200) -> int:
        """Probe an open circuit when due, then move up to ``limit`` spilled writes of one
        contact (or one value) into the store; returns how many moved. The probe is the
        move itself when there is one: a store that answers reads but cannot take writes
        (``?wait_replicas=`` short of replicas, OOM) keeps the circuit open, instead of
        closing and reopening it (two log lines) at every probe."""
        self._mover_at = time.monotonic()
        if self.circuit.is_open and not self.circuit.probe_due():
            return 0
        spill = self._file(create=False)
        rows = spill.claim(self._owner, MOVE_CLAIM_SECONDS, limit, time.time()) \
            if spill is not None and self._holds_anything() else []
        try:
            if not rows:
                if self.circuit.is_open:  # nothing of ours to move: probe with a read
                    self.primary.next_due_at(time.time())
                    self.circuit.close()
                return 0
            assert spill is not None
            if rows[0].contact_key.startswith(_VALUE):
                self._replay_values(spill, rows)
            else:
                self._move_rows(spill, rows)
        except StoreUnavailable as exc:
            self.circuit.trip(exc)
            if rows and not exc.maybe_applied:
                assert spill is not None
                spill.release(rows[0].contact_key, self._owner)
            # else the claim lapses and the rows come back uncertain: maybe moved already
            return 0
        self.circuit.close()
        return len(rows)

    def _move_rows(self, spill: SQLiteStore, rows: list[OutboxRow]) -> None:
        moving = [_copy(row, uncertain=row.uncertain) for row in rows]
        try:
            # a row an earlier move already admitted (even delivered since) is skipped
            self.primary.enqueue_moved(moving)
        except RowKeyTaken:
            # an earlier move of some of them is still queued: move the others one by one
            for row in moving:
                try:
                    self.primary.enqueue_moved([row])
                except RowKeyTaken:
                    pass
                spill.complete(row.key, self._owner)
            return
        for row in rows:
            spill.complete(row.key, self._owner)

    def _replay_values(self, spill: SQLiteStore, rows: list[OutboxRow]) -> None:
        now = time.time()
        last: dict[str, object] = {}
        for row in rows:
            last = json.loads(row.payload)
            expires = last.get("expires_at")
            if expires is None or float(str(expires)) > now:
                self.primary.set_value(str(last["scope"]), str(last["key"]),
                                       str(last["value"]),
                                       None if expires is None else float(str(expires)))
            spill.complete(row.key, self._owner)
        # a newer value spilled meanwhile stays until its own row is moved
        spill.delete_value(str(last["scope"]), str(last["key"]), expected=str(last["value"]))

    # -- everything else goes to the store, through the circuit ------------------------------

    def get_contact(self, key: str) -> ContactRecord | None:
        return self._through(lambda: self.primary.get_contact(key))

    def save_contact(
        self, key: str, source_id: str, contact_id: int | None, identity: str | None = None,
        *, instance: str | None = None,
    ) -> None:
        self._through(lambda: self.primary.save_contact(key, source_id, contact_id, identity,
                                                        instance=instance))

    def set_conversation(self, key: str, conversation_id: int) -> None:
        self._through(lambda: self.primary.set_conversation(key, conversation_id))

    def forget_conversation(self, key: str, conversation_id: int) -> bool:
        return self._through(lambda: self.primary.forget_conversation(key, conversation_id))

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        return self._through(lambda: self.primary.acquire_lock(name, owner, ttl))

    def release_lock(self, name: str, owner: str) -> None:
        self._through(lambda: self.primary.release_lock(name, owner))

    def enqueue_moved(self, rows: Sequence[OutboxRow]) -> list[bool]:
        return self._through(lambda: self.primary.enqueue_moved(rows))

    def claim(self, owner: str, ttl: float, limit: int, now: float) -> list[OutboxRow]:
        return self._through(lambda: self.primary.claim(owner, ttl, limit, now))

    def renew_claims(self, owners: Sequence[str], ttl: float, now: float) -> int:
        return self._through(lambda: self.primary.renew_claims(owners, ttl, now))

    def complete(self, key: str, owner: str, chatwoot_message_id: int | None = None) -> bool:
        return self._through(lambda: self.primary.complete(key, owner, chatwoot_message_id))

    def complete_with_values(
        self, key: str, owner: str, chatwoot_message_id: int | None,
        values: Sequence[ValueItem],
    ) -> bool:
        if values and (self.circuit.is_open or self._holds_anything()):
            # the values take set_values' way (spilled, or behind spilled ones, in order)
            self.set_values(values)
            return self.complete(key, owner, chatwoot_message_id)
        try:
            return self._through(lambda: self.primary.complete_with_values(
                key, owner, chatwoot_message_id, values))
        except StoreUnavailable:
            # the row stays queued (its claim lapses), but what its delivery learnt is kept
            self.set_values(values)
            raise

    def retry_later(
        self, key: str, owner: str, at: float, error: str, *, uncertain: bool, attempt: bool
    ) -> None:
        self._through(lambda: self.primary.retry_later(key, owner, at, error,
                                                       uncertain=uncertain, attempt=attempt))

    def release(self, contact_key: str, owner: str) -> None:
        self._through(lambda: self.primary.release(contact_key, owner))

    def prune_seen(self, before: float) -> int:
        spill = self._file(create=False)
        if spill is not None:
            spill.prune_seen(before)
        return self._through(lambda: self.primary.prune_seen(before))

    def dead_letter(self, key: str, owner: str, reason: str) -> None:
        self._through(lambda: self.primary.dead_letter(key, owner, reason))

    def retry_dead(self, keys: Sequence[str] | None = None) -> int:
        return self._through(lambda: self.primary.retry_dead(keys))

    def dead_letters(self, limit: int = 100) -> list[OutboxRow]:
        return self._through(lambda: self.primary.dead_letters(limit))

    def outbox_counts(self, now: float) -> OutboxCounts:
        return self._through(lambda: self.primary.outbox_counts(now))

    def next_due_at(self, now: float) -> float | None:
        return self._through(lambda: self.primary.next_due_at(now))

    def has_queued_before(self, at: float) -> bool:
        return self._through(lambda: self.primary.has_queued_before(at))

    def set_last_message_id(self, key: str, message_id: int) -> None:
        self._through(lambda: self.primary.set_last_message_id(key, message_id))

    def last_message_id(self, key: str) -> int | None:
        return self._through(lambda: self.primary.last_message_id(key))

    def get_handoff(self, contact_key: str) -> HandoffRecord | None:
        return self._through(lambda: self.primary.get_handoff(contact_key))

    def put_handoff(self, record: HandoffRecord, expected_version: int | None) -> bool:
        return self._through(lambda: self.primary.put_handoff(record, expected_version))

    def list_handoffs(self, state: str) -> list[HandoffRecord]:
        return self._through(lambda: self.primary.list_handoffs(state))

    def first_seen(self, name: str, now: float) -> bool:
        return self._through(lambda: self.primary.first_seen(name, now))

    def add_value(self, scope: str, key: str, value: str, now: float) -> str:
        return self._through(lambda: self.primary.add_value(scope, key, value, now))

    def delete_value(self, scope: str, key: str, expected: str | None = None) -> bool:
        return self._through(lambda: self.primary.delete_value(scope, key, expected))

    def take_tokens(self, bucket: str, per_minute: float, capacity: float,
                    count: int = 1) -> float | None:
        try:
            return self._through(lambda: self.primary.take_tokens(bucket, per_minute,
                                                                  capacity, count))
        except StoreUnavailable:
            return None  # Redis away: each host paces itself meanwhile

    def maintain(self) -> None:
        spill = self._file(create=False)
        if spill is not None:
            spill.maintain()
        if not self.circuit.is_open:
            self._through(self.primary.maintain)

    def durability_warning(self) -> str | None:
        return self.primary.durability_warning()

    def eviction_warning(self) -> str | None:
        return self.primary.eviction_warning()

    def replication(self) -> str | None:
        return self.primary.replication()

    def data_loss(self) -> str | None:
        return self.primary.data_loss()

    def close(self) -> None:
        try:
            self.primary.close()
        finally:
            if self._spill is not None:
                self._spill.close()


def _value_name(scope: str, key: str) -> str:
    return f"{_VALUE}{scope}\0{key}"


def _copy(row: OutboxRow, *, uncertain: bool) -> OutboxRow:
    """A fresh row of the same message (ids and attempts are the receiving store's own)."""
    return OutboxRow(key=row.key, contact_key=row.contact_key, payload=row.payload,
                     unique_key=row.unique_key, created_at=row.created_at,
                     uncertain=uncertain or row.uncertain)
