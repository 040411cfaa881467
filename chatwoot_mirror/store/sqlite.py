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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ..errors import StoreError
from .base import ContactRecord, Store

T = TypeVar("T")

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
]


class SQLiteStore(Store):
    """The embedded default store. ``path`` is a file; ``busy_timeout`` is in seconds."""

    def __init__(self, path: str, *, busy_timeout: float = 10.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._migrate()

    # -- connections and transactions -------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=self.busy_timeout, isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: the write lock is taken before the first read."""
        conn = self._conn()
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
                    for statement in script.split(";"):
                        if statement.strip():
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
                "SELECT key, source_id, contact_id, conversation_id FROM contacts WHERE key = ?",
                (key,),
            ).fetchone()
        )
        return ContactRecord(*row) if row else None

    def save_contact(self, key: str, source_id: str, contact_id: int | None) -> None:
        with self._guard(), self._write() as conn:
            conn.execute(
                "INSERT INTO contacts (key, source_id, contact_id, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET source_id = excluded.source_id,"
                " contact_id = excluded.contact_id, updated_at = excluded.updated_at",
                (key, source_id, contact_id, time.time()),
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

    # -- lifecycle --------------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"store write failed: {exc}") from exc

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()
