"""SQLite-only behaviour: files, WAL, migrations, threads. What every backend promises is
in tests/test_store_contract.py."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from chatwoot_mirror.errors import StoreError
from chatwoot_mirror.store import SQLiteStore
from chatwoot_mirror.store.sqlite import MIGRATIONS


@pytest.fixture
def store(db_path):
    s = SQLiteStore(db_path)
    yield s
    s.close()


def test_schema_is_versioned_and_wal(store, db_path):
    assert store.schema_version == len(MIGRATIONS)
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    SQLiteStore(db_path).close()  # opening again migrates nothing and fails nothing


def test_unwritable_location_raises_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises((StoreError, OSError)):
        SQLiteStore(str(blocker / "sub" / "db.sqlite"))


def test_connections_of_finished_threads_are_closed(db_path):
    """A threaded web server runs each request on a new thread; before this, every one left
    an open connection (three file handles) behind until the store closed."""
    store = SQLiteStore(db_path)
    for _ in range(200):
        worker = threading.Thread(target=lambda: store.get_value("s", "k", 0))
        worker.start()
        worker.join()
    assert len(store._connections) <= 2
    store.close()


def test_close_while_other_threads_use_the_store(db_path):
    """close() must not close a connection another thread is using (sqlite3 crashes the
    process); those threads get StoreError from then on."""
    store = SQLiteStore(db_path)
    stop = threading.Event()
    errors: list[Exception] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                store.get_value("s", "k", 0)
                store.set_value("s", "k", "v")
            except StoreError as exc:
                errors.append(exc)
                time.sleep(0.001)

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for thread in readers:
        thread.start()
    time.sleep(0.05)
    store.close()
    time.sleep(0.05)
    stop.set()
    for thread in readers:
        thread.join()
    assert errors and all("closed" in str(e) for e in errors)
    with pytest.raises(StoreError, match="closed"):
        store.get_value("s", "k", 0)


def test_close_ends_while_another_thread_holds_the_write_lock_or_a_reader_the_wal(db_path):
    """A shutdown must end: close() waits a bounded while for a write of another thread
    and for a reader of another connection (the checkpoint), then closes what is its own.
    It used to wait for the lock without limit, and 10 s for the reader."""
    store = SQLiteStore(db_path)
    store.enqueue([])  # the schema exists
    reader = sqlite3.connect(db_path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM queue").fetchone()  # holds a WAL snapshot
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with store._write_lock:  # a write of another thread that does not finish
            held.set()
            release.wait(120)

    threading.Thread(target=writer, daemon=True).start()
    assert held.wait(30)
    closing = threading.Thread(target=store.close, daemon=True)
    closing.start()
    closing.join(60)
    try:
        assert not closing.is_alive()
        with pytest.raises(StoreError):
            store.outbox_counts(time.time())  # closed for every later call
    finally:
        release.set()
        reader.close()
