"""SQLite store: stdlib ``sqlite3``, WAL, one connection per thread.

Safe for several processes on one host sharing one file: every write is one
short transaction, taken with ``BEGIN IMMEDIATE`` where a read decides the write,
and SQLite's busy timeout makes concurrent writers wait instead of failing.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from ..errors import RowKeyTaken, StoreError
from .base import ContactRecord, HandoffRecord, OutboxCounts, OutboxRow, Store

T = TypeVar("T")

#: The longest :meth:`SQLiteStore.close` waits for another thread or process (seconds).
CLOSE_WAIT = 1.0

# Each entry moves the schema one version forward; PRAGMA user_version records where a file is.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE contacts (
        key TEXT PRIMARY KEY,
        source_id TEXT NOT NULL,
        contact_id INTEGER,
        conversation_id INTEGER,
        updated_at REAL NOT NULL
    );
    CREATE TABLE locks (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
    # v2: the durable outbox. Messages wait in `outbox`; `queue` has one row per contact
    # with queued messages and is the unit of scheduling and claiming (order per contact).
    """
    ALTER TABLE contacts ADD COLUMN last_message_id INTEGER;
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        contact_key TEXT NOT NULL,
        payload TEXT NOT NULL,
        provider_message_id TEXT,
        created_at REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',
        attempts INTEGER NOT NULL DEFAULT 0,
        ambiguous INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    );
    CREATE INDEX outbox_contact ON outbox (contact_key, state, id);
    CREATE INDEX outbox_state ON outbox (state, id);
    CREATE TABLE queue (
        contact_key TEXT PRIMARY KEY,
        next_attempt_at REAL NOT NULL,
        claimed_by TEXT,
        claim_expires_at REAL
    );
    CREATE INDEX queue_due ON queue (next_attempt_at);
    CREATE TABLE seen_ids (
        provider_message_id TEXT PRIMARY KEY,
        seen_at REAL NOT NULL
    );
    """,
    # v3: enqueue becomes one INSERT statement (atomic on its own): triggers skip a
    # provider message id seen before and give the contact its scheduling row. The host
    # path then crosses into SQLite once per call instead of five times.
    """
    CREATE TRIGGER outbox_seen BEFORE INSERT ON outbox
    WHEN NEW.provider_message_id IS NOT NULL
    BEGIN
        SELECT RAISE(IGNORE) WHERE EXISTS (
            SELECT 1 FROM seen_ids WHERE provider_message_id = NEW.provider_message_id
        );
        INSERT INTO seen_ids (provider_message_id, seen_at)
            VALUES (NEW.provider_message_id, NEW.created_at);
    END;
    CREATE TRIGGER outbox_schedule AFTER INSERT ON outbox
    BEGIN
        INSERT OR IGNORE INTO queue (contact_key, next_attempt_at)
            VALUES (NEW.contact_key, NEW.created_at);
    END;
    """,
    # v4: handoff. One row per contact that has ever been handed to humans; `changed_at` is
    # the Chatwoot time of the event behind the last transition, so a late, stale webhook
    # cannot undo a newer one. Webhook delivery ids are remembered to drop replays.
    """
    CREATE TABLE handoff (
        contact_key TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        reason TEXT,
        changed_at REAL NOT NULL,
        last_human_at REAL,
        conversation_id INTEGER
    );
    CREATE INDEX handoff_idle ON handoff (state, last_human_at);
    CREATE TABLE webhook_deliveries (
        delivery_id TEXT PRIMARY KEY,
        seen_at REAL NOT NULL
    );
    """,
    # v5: the contact's identity (where a relayed agent reply must go).
    """
    ALTER TABLE contacts ADD COLUMN identity TEXT;
    """,
    # v6: bot replies since the contact last changed hands (the max-turns trigger).
    """
    ALTER TABLE handoff ADD COLUMN bot_turns INTEGER NOT NULL DEFAULT 0;
    """,
    # v7: small per-contact state of channel integrations (a Typebot session id, say).
    """
    CREATE TABLE kv (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        expires_at REAL,
        PRIMARY KEY (scope, key)
    );
    """,
    # v8: which Chatwoot (URL, account, inbox) a contact's ids came from. Rows written
    # before this have none and are never reused: their ids may belong to another Chatwoot.
    """
    ALTER TABLE contacts ADD COLUMN instance TEXT;
    """,
    # v9: the handoff rules left SQL (chatwoot_mirror.handoff.rules); the row is stored
    # whole with a version for compare-and-set.
    """
    ALTER TABLE handoff ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    """,
    # v10: flush looks for rows by age (has_queued_before), not by a global id.
    """
    CREATE INDEX outbox_age ON outbox (state, created_at);
    """,
]

_HANDOFF = (
    "SELECT contact_key, state, reason, changed_at, last_human_at, conversation_id, bot_turns,"
    " version FROM handoff"
)

_ROW = (
    "SELECT id, key, contact_key, payload, provider_message_id, created_at, attempts,"
    " ambiguous, last_error FROM outbox"
)


class SQLiteStore(Store):
    """The embedded default store. ``path`` is a file; ``busy_timeout`` is in seconds."""

    def __init__(self, path: str, *, busy_timeout: float = 10.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        # (owner thread, connection): close() may only close a connection whose thread is
        # gone or is the caller; closing one another thread is using crashes sqlite3.
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        # Threads of one process queue on this mutex rather than in SQLite's busy handler,
        # which sleeps in millisecond steps: the host's enqueue stays sub-millisecond even
        # while workers write. Other processes still meet SQLite's own locking.
        self._write_lock = threading.Lock()
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store's folder {directory}: {exc}") from exc
        self._migrate()

    # -- connections and transactions -------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if self._closed:
            if conn is not None:  # this thread's own connection: safe to close here
                self._local.conn = None
                conn.close()
            raise StoreError("store is closed")
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=self.busy_timeout, isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
                self._enter_wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")
                # SQLite runs an automatic checkpoint (with fsync) inside whichever commit
                # crosses the WAL threshold, sometimes the host bot's: several ms of tail
                # latency. Checkpoints run from a background job instead (maintain()).
                conn.execute("PRAGMA wal_autocheckpoint=0")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._connections_lock:
                # A threaded web server runs each request on a new thread: close the
                # connections of finished threads, or file handles pile up.
                for owner, old in self._connections:
                    if _finished(owner):
                        old.close()
                self._connections = [(owner, c) for owner, c in self._connections
                                     if not _finished(owner)]
                self._connections.append((threading.current_thread(), conn))
        return conn

    def _enter_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL, retrying while another process holds the file. Switching needs
        an exclusive lock and SQLite may answer "database is locked" at once instead of
        calling the busy handler (seen when many processes open one new file together:
        2 of 100 failed), so the busy timeout is applied here by hand."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL").fetchone()
                return
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if ("locked" not in text and "busy" not in text) or (
                        time.monotonic() + delay > deadline):
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: the write lock is taken before the first read."""
        conn = self._conn()
        if not self._write_lock.acquire(timeout=self.busy_timeout):
            raise StoreError("store is locked: another thread held it past the busy timeout")
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"store is locked or unwritable: {exc}") from exc
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK")
                    raise StoreError(f"store commit failed: {exc}") from exc
        finally:
            self._write_lock.release()

    @contextmanager
    def _write_lock_only(self) -> Iterator[None]:
        """For a single statement, which SQLite makes atomic without BEGIN/COMMIT."""
        if not self._write_lock.acquire(timeout=self.busy_timeout):
            raise StoreError("store is locked: another thread held it past the busy timeout")
        try:
            yield
        finally:
            self._write_lock.release()

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._conn())
        except sqlite3.Error as exc:
            raise StoreError(f"store read failed: {exc}") from exc

    def _migrate(self) -> None:
        try:
            with self._write() as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in _statements(script):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={number}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot prepare the store at {self.path}: {exc}") from exc

    @property
    def schema_version(self) -> int:
        return self._read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])

    # -- contacts ---------------------------------------------------------------------------

    def get_contact(self, key: str) -> ContactRecord | None:
        row = self._read(
            lambda c: c.execute(
                "SELECT key, source_id, contact_id, conversation_id, identity, instance"
                " FROM contacts WHERE key = ?",
                (key,),
            ).fetchone()
        )
        return ContactRecord(*row) if row else None

    def save_contact(
        self, key: str, source_id: str, contact_id: int | None, identity: str | None = None,
        *, instance: str | None = None,
    ) -> None:
        with self._guard(), self._write() as conn:
            conn.execute(
                "INSERT INTO contacts (key, source_id, contact_id, identity, instance, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET source_id = excluded.source_id,"
                " contact_id = excluded.contact_id,"
                " identity = COALESCE(excluded.identity, identity),"
                # ids learned from another instance mean nothing here: drop them
                " conversation_id = CASE WHEN instance IS excluded.instance"
                " THEN conversation_id END,"
                " last_message_id = CASE WHEN instance IS excluded.instance"
                " THEN last_message_id END,"
                " instance = excluded.instance,"
                " updated_at = excluded.updated_at",
                (key, source_id, contact_id, identity, instance, time.time()),
            )

    def set_conversation(self, key: str, conversation_id: int) -> None:
        with self._guard(), self._write() as conn:
            changed = conn.execute(
                "UPDATE contacts SET conversation_id = ?, updated_at = ? WHERE key = ?",
                (conversation_id, time.time(), key),
            ).rowcount
            if not changed:
                raise StoreError(f"set_conversation for unknown contact {key}")

    def forget_conversation(self, key: str, conversation_id: int) -> bool:
        with self._guard(), self._write() as conn:
            return bool(
                conn.execute(
                    "UPDATE contacts SET conversation_id = NULL, updated_at = ?"
                    " WHERE key = ? AND conversation_id = ?",
                    (time.time(), key, conversation_id),
                ).rowcount
            )

    # -- locks ------------------------------------------------------------------------------

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        now = time.time()
        with self._guard(), self._write() as conn:
            row = conn.execute("SELECT owner, expires_at FROM locks WHERE name = ?", (name,))
            current = row.fetchone()
            if current and current[0] != owner and current[1] > now:
                return False
            conn.execute(
                "INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET owner = excluded.owner,"
                " expires_at = excluded.expires_at",
                (name, owner, now + ttl),
            )
            return True

    def release_lock(self, name: str, owner: str) -> None:
        with self._guard(), self._write() as conn:
            conn.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))

    # -- outbox -----------------------------------------------------------------------------

    def enqueue(self, rows: Sequence[OutboxRow]) -> list[bool]:
        if not rows:
            return []
        now = time.time()
        values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(rows))
        params: list[object] = []
        for row in rows:
            # the unique key lives in the provider_message_id column (its v2 name)
            params += [row.key, row.contact_key, row.payload, row.unique_key,
                       row.created_at or now, 1 if row.uncertain else 0]
        with self._guard(), self._write_lock_only():
            try:
                inserted = {
                    key: outbox_id
                    for key, outbox_id in self._conn().execute(
                        "INSERT INTO outbox (key, contact_key, payload, provider_message_id,"
                        f" created_at, ambiguous) VALUES {values} RETURNING key, id",
                        params,
                    )
                }
            except sqlite3.IntegrityError as exc:
                if "outbox.key" not in str(exc):
                    raise
                raise RowKeyTaken(f"enqueue: a row key is already queued ({exc})") from exc
        for row in rows:
            row.id = inserted.get(row.key)
        return [row.key in inserted for row in rows]

    def claim(self, owner: str, ttl: float, limit: int, now: float) -> list[OutboxRow]:
        with self._guard(), self._write() as conn:
            head = conn.execute(
                "SELECT contact_key, claimed_by FROM queue WHERE next_attempt_at <= ?"
                " AND (claimed_by IS NULL OR claim_expires_at < ?)"
                " ORDER BY next_attempt_at LIMIT 1",
                (now, now),
            ).fetchone()
            if head is None:
                return []
            contact_key, previous_owner = head
            rows = [
                _outbox_row(r)
                for r in conn.execute(
                    _ROW + " WHERE contact_key = ? AND state = 'queued' ORDER BY id LIMIT ?",
                    (contact_key, limit),
                )
            ]
            if not rows:  # only dead letters left: the contact has nothing to deliver
                conn.execute("DELETE FROM queue WHERE contact_key = ?", (contact_key,))
                return []
            conn.execute(
                "UPDATE queue SET claimed_by = ?, claim_expires_at = ? WHERE contact_key = ?",
                (owner, now + ttl, contact_key),
            )
            if previous_owner is not None:
                # The previous owner's claim expired: it died or hung mid-delivery, so any
                # of these may already be in Chatwoot.
                conn.execute(
                    "UPDATE outbox SET ambiguous = 1 WHERE contact_key = ? AND state = 'queued'"
                    " AND id <= ?",
                    (contact_key, rows[-1].id),
                )
                for row in rows:
                    row.uncertain = True
            return rows

    def renew_claims(self, owners: Sequence[str], ttl: float, now: float) -> int:
        if not owners:
            return 0
        with self._guard(), self._write() as conn:
            return conn.execute(
                f"UPDATE queue SET claim_expires_at = ? WHERE claimed_by IN"
                f" ({','.join('?' * len(owners))})",
                (now + ttl, *owners),
            ).rowcount

    def _holds(self, conn: sqlite3.Connection, key: str, owner: str) -> str | None:
        """The message's contact key if ``owner`` holds that contact's claim."""
        row = conn.execute(
            "SELECT o.contact_key FROM outbox o JOIN queue q ON q.contact_key = o.contact_key"
            " WHERE o.key = ? AND q.claimed_by = ?",
            (key, owner),
        ).fetchone()
        return row[0] if row else None

    def _drop_queue_if_empty(self, conn: sqlite3.Connection, contact_key: str) -> None:
        left = conn.execute(
            "SELECT 1 FROM outbox WHERE contact_key = ? AND state = 'queued' LIMIT 1",
            (contact_key,),
        ).fetchone()
        if left is None:
            conn.execute("DELETE FROM queue WHERE contact_key = ?", (contact_key,))

    def complete(self, key: str, owner: str, chatwoot_message_id: int | None = None) -> bool:
        with self._guard(), self._write() as conn:
            contact_key = self._holds(conn, key, owner)
            if contact_key is None:
                return False
            conn.execute("DELETE FROM outbox WHERE key = ?", (key,))
            if chatwoot_message_id:
                self._raise_last_message_id(conn, contact_key, chatwoot_message_id)
            self._drop_queue_if_empty(conn, contact_key)
            return True

    def retry_later(
        self, key: str, owner: str, at: float, error: str, *, uncertain: bool, attempt: bool
    ) -> None:
        with self._guard(), self._write() as conn:
            contact_key = self._holds(conn, key, owner)
            if contact_key is None:
                return
            conn.execute(
                "UPDATE outbox SET attempts = attempts + ?, last_error = ?,"
                " ambiguous = MAX(ambiguous, ?) WHERE key = ?",
                (1 if attempt else 0, error, 1 if uncertain else 0, key),
            )
            conn.execute(
                "UPDATE queue SET claimed_by = NULL, claim_expires_at = NULL,"
                " next_attempt_at = ? WHERE contact_key = ?",
                (at, contact_key),
            )

    def release(self, contact_key: str, owner: str) -> None:
        with self._guard(), self._write() as conn:
            conn.execute(
                "UPDATE queue SET claimed_by = NULL, claim_expires_at = NULL"
                " WHERE contact_key = ? AND claimed_by = ?",
                (contact_key, owner),
            )

    def prune_seen(self, before: float) -> int:
        with self._guard(), self._write() as conn:
            conn.execute("DELETE FROM webhook_deliveries WHERE seen_at < ?", (before,))
            conn.execute("DELETE FROM kv WHERE expires_at < ?", (before,))
            return conn.execute("DELETE FROM seen_ids WHERE seen_at < ?", (before,)).rowcount

    def dead_letter(self, key: str, owner: str, reason: str) -> None:
        with self._guard(), self._write() as conn:
            contact_key = self._holds(conn, key, owner)
            if contact_key is None:
                return
            conn.execute(
                "UPDATE outbox SET state = 'dead', last_error = ? WHERE key = ?", (reason, key)
            )
            self._drop_queue_if_empty(conn, contact_key)

    def retry_dead(self, keys: Sequence[str] | None = None) -> int:
        now = time.time()
        with self._guard(), self._write() as conn:
            where = "state = 'dead'"
            params: list[object] = []
            if keys is not None:
                if not keys:
                    return 0
                where += f" AND key IN ({','.join('?' * len(keys))})"
                params.extend(keys)
            contacts = [r[0] for r in conn.execute(
                f"SELECT DISTINCT contact_key FROM outbox WHERE {where}", params
            )]
            count = conn.execute(
                f"UPDATE outbox SET state = 'queued', attempts = 0 WHERE {where}", params
            ).rowcount
            for contact_key in contacts:
                conn.execute(
                    "INSERT INTO queue (contact_key, next_attempt_at) VALUES (?, ?)"
                    " ON CONFLICT(contact_key) DO UPDATE SET next_attempt_at ="
                    " MIN(next_attempt_at, excluded.next_attempt_at)",
                    (contact_key, now),
                )
            return count

    def dead_letters(self, limit: int = 100) -> list[OutboxRow]:
        return self._read(lambda c: [
            _outbox_row(r)
            for r in c.execute(_ROW + " WHERE state = 'dead' ORDER BY id LIMIT ?", (limit,))
        ])

    def outbox_counts(self, now: float) -> OutboxCounts:
        def count(c: sqlite3.Connection) -> OutboxCounts:
            queued, oldest = c.execute(
                "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE state = 'queued'"
            ).fetchone()
            dead = c.execute("SELECT COUNT(*) FROM outbox WHERE state = 'dead'").fetchone()[0]
            # Delivery within a contact is sequential: one message in flight per live claim.
            in_flight = c.execute(
                "SELECT COUNT(*) FROM queue WHERE claimed_by IS NOT NULL AND claim_expires_at >= ?",
                (now,),
            ).fetchone()[0]
            return OutboxCounts(queued, min(in_flight, queued), dead, oldest)

        return self._read(count)

    def next_due_at(self, now: float) -> float | None:
        return self._read(lambda c: c.execute(
            "SELECT MIN(CASE WHEN claimed_by IS NULL THEN next_attempt_at"
            " ELSE MAX(next_attempt_at, claim_expires_at) END) FROM queue"
        ).fetchone()[0])

    def has_queued_before(self, at: float) -> bool:
        return self._read(lambda c: c.execute(
            "SELECT 1 FROM outbox WHERE state = 'queued' AND created_at <= ? LIMIT 1", (at,)
        ).fetchone() is not None)

    def _raise_last_message_id(
        self, conn: sqlite3.Connection, key: str, message_id: int
    ) -> None:
        conn.execute(
            "UPDATE contacts SET last_message_id = MAX(COALESCE(last_message_id, 0), ?)"
            " WHERE key = ?",
            (message_id, key),
        )

    def set_last_message_id(self, key: str, message_id: int) -> None:
        with self._guard(), self._write() as conn:
            self._raise_last_message_id(conn, key, message_id)

    def last_message_id(self, key: str) -> int | None:
        row = self._read(lambda c: c.execute(
            "SELECT last_message_id FROM contacts WHERE key = ?", (key,)
        ).fetchone())
        return row[0] if row else None

    # -- handoff ----------------------------------------------------------------------------

    def get_handoff(self, contact_key: str) -> HandoffRecord | None:
        row = self._read(lambda c: c.execute(
            _HANDOFF + " WHERE contact_key = ?", (contact_key,)
        ).fetchone())
        return HandoffRecord(*row) if row else None

    def put_handoff(self, record: HandoffRecord, expected_version: int | None) -> bool:
        values = (record.state, record.reason, record.changed_at, record.last_human_at,
                  record.conversation_id, record.bot_turns, record.version)
        with self._guard(), self._write_lock_only():
            if expected_version is None:
                cursor = self._conn().execute(
                    "INSERT INTO handoff (state, reason, changed_at, last_human_at,"
                    " conversation_id, bot_turns, version, contact_key)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (contact_key) DO NOTHING",
                    (*values, record.contact_key))
            else:
                cursor = self._conn().execute(
                    "UPDATE handoff SET state = ?, reason = ?, changed_at = ?,"
                    " last_human_at = ?, conversation_id = ?, bot_turns = ?, version = ?"
                    " WHERE contact_key = ? AND version = ?",
                    (*values, record.contact_key, expected_version))
            return bool(cursor.rowcount)

    def list_handoffs(self, state: str) -> list[HandoffRecord]:
        return self._read(lambda c: [HandoffRecord(*r) for r in c.execute(
            _HANDOFF + " WHERE state = ?", (state,)
        )])

    def first_seen(self, name: str, now: float) -> bool:
        with self._guard(), self._write_lock_only():
            return bool(self._conn().execute(
                "INSERT OR IGNORE INTO webhook_deliveries (delivery_id, seen_at) VALUES (?, ?)",
                (name, now),
            ).rowcount)

    def get_value(self, scope: str, key: str, now: float) -> str | None:
        row = self._read(lambda c: c.execute(
            "SELECT value FROM kv WHERE scope = ? AND key = ?"
            " AND (expires_at IS NULL OR expires_at > ?)",
            (scope, key, now),
        ).fetchone())
        return row[0] if row else None

    def set_value(
        self, scope: str, key: str, value: str, expires_at: float | None = None
    ) -> None:
        with self._guard(), self._write_lock_only():
            self._conn().execute(
                "INSERT INTO kv (scope, key, value, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value,"
                " expires_at = excluded.expires_at",
                (scope, key, value, expires_at),
            )

    def add_value(self, scope: str, key: str, value: str, now: float) -> str:
        with self._guard(), self._write() as conn:
            # an expired value counts as none: replace it, else keep what is there
            conn.execute(
                "INSERT INTO kv (scope, key, value, expires_at) VALUES (?, ?, ?, NULL)"
                " ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value,"
                " expires_at = NULL WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ?",
                (scope, key, value, now),
            )
            row = conn.execute("SELECT value FROM kv WHERE scope = ? AND key = ?",
                               (scope, key)).fetchone()
            return str(row[0])

    def delete_value(self, scope: str, key: str, expected: str | None = None) -> bool:
        with self._guard(), self._write_lock_only():
            if expected is None:
                cursor = self._conn().execute(
                    "DELETE FROM kv WHERE scope = ? AND key = ?", (scope, key))
            else:
                cursor = self._conn().execute(
                    "DELETE FROM kv WHERE scope = ? AND key = ? AND value = ?",
                    (scope, key, expected))
            return bool(cursor.rowcount)

    def maintain(self) -> None:
        try:
            self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"store checkpoint failed: {exc}") from exc

    # -- lifecycle --------------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"store write failed: {exc}") from exc

    def close(self) -> None:
        """Checkpoint and close; bounded by ``CLOSE_WAIT`` seconds whatever other threads
        and processes hold (a shutdown must end: what they hold is theirs to close)."""
        if self._closed:
            return
        try:
            conn = self._conn()
            # not the busy timeout (10 s): a reader elsewhere would hold the exit that long
            conn.execute(f"PRAGMA busy_timeout={int(CLOSE_WAIT * 1000)}")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except (sqlite3.Error, StoreError):
            pass  # another process may hold the database; its own close checkpoints
        self._closed = True  # from now on every call fails with StoreError
        me = threading.current_thread()
        if not self._write_lock.acquire(timeout=CLOSE_WAIT):
            # a write of another thread is still running: its connection is left to it
            self._local.conn = None
            return
        try:
            self._close_connections(me)
        finally:
            self._write_lock.release()
        self._local.conn = None

    def _close_connections(self, me: threading.Thread) -> None:
        with self._connections_lock:  # no write is half done: the caller holds the lock
            keep = []
            for owner, conn in self._connections:
                if owner is me or _finished(owner):
                    try:
                        conn.close()
                    except sqlite3.Error:
                        pass
                else:  # still running (a web server's thread): it closes its own
                    keep.append((owner, conn))
            self._connections = keep


def _finished(thread: threading.Thread) -> bool:
    """Whether ``thread`` is done with its connection. Not the main thread, ever: at
    interpreter exit ``threading`` marks it stopped before the ``atexit`` handlers run,
    and closing its connection while it drains the outbox in one of them (a worker
    opening its own connection did this) crashed the interpreter."""
    return thread is not threading.main_thread() and not thread.is_alive()


def _outbox_row(r: tuple) -> OutboxRow:
    return OutboxRow(
        id=r[0], key=r[1], contact_key=r[2], payload=r[3], unique_key=r[4],
        created_at=r[5], attempts=r[6], uncertain=bool(r[7]), last_error=r[8],
    )


def _statements(script: str) -> list[str]:
    """Split a migration into statements; a trigger body's inner ';' do not end it."""
    statements: list[str] = []
    current = ""
    for part in script.split(";"):
        current += part + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                statements.append(current.strip())
            current = ""
    return statements
