"""Stuck work: a transient store failure never blocks a contact for good, several processes
may open one new store file at once, and exiting with a backlog is quiet."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
from conftest import ROOT, eventually

from chatwoot_mirror import Config, Mirror, StoreError
from chatwoot_mirror.store import SQLiteStore
from chatwoot_mirror.store import sqlite as sqlite_module
from chatwoot_mirror.testing import FakeChatwoot

MARIA = "5511987654321"


class FlakyStore(SQLiteStore):
    """Fails the named primitives a given number of times (a full disk for a moment)."""

    def __init__(self, path: str, **failures: int) -> None:
        super().__init__(path)
        self.failures = dict(failures)

    def _maybe_fail(self, name: str) -> None:
        if self.failures.get(name, 0) > 0:
            self.failures[name] -= 1
            raise StoreError(f"store write failed: database or disk is full ({name})")

    def complete(self, *args, **kwargs):
        self._maybe_fail("complete")
        return super().complete(*args, **kwargs)

    def retry_later(self, *args, **kwargs):
        self._maybe_fail("retry_later")
        return super().retry_later(*args, **kwargs)

    def release(self, *args, **kwargs):
        self._maybe_fail("release")
        return super().release(*args, **kwargs)


def config(cw: FakeChatwoot, tmp_path) -> Config:
    return Config(url=cw.url, inbox_identifier=cw.inbox_identifier, account_id=cw.account_id,
                  bot_token=cw.bot_token, db_path=str(tmp_path / "m.db"), claim_ttl_seconds=1,
                  retry_base_seconds=0.05, retry_max_seconds=0.2, max_requests_per_minute=0,
                  workers=2)


def contents(cw: FakeChatwoot) -> list[str]:
    return [m["content"] for m in cw.messages()]


@pytest.mark.parametrize("primitive", ["complete", "release"])
def test_a_transient_store_failure_after_delivery_does_not_block_the_contact(
    tmp_path, primitive
):
    with FakeChatwoot() as cw:
        cw.faults.latency = 0.2
        store = FlakyStore(str(tmp_path / "m.db"), **{primitive: 1})
        with Mirror(config(cw, tmp_path), store=store) as mirror:
            assert mirror.log_incoming(MARIA, "primeira")
            assert eventually(lambda: cw.requests)  # its run has started: "segunda" waits
            assert mirror.log_incoming(MARIA, "segunda")  # behind the claim left behind
            # the claim lapses after its ttl (1 s) instead of being renewed for ever
            assert eventually(lambda: mirror.stats()["queued"] == 0, timeout=15)
            assert contents(cw) == ["primeira", "segunda"]  # nothing doubled
            assert store.failures[primitive] == 0


def test_a_transient_store_failure_when_scheduling_a_retry_recovers(tmp_path):
    with FakeChatwoot() as cw:
        cw.faults.outage = True
        store = FlakyStore(str(tmp_path / "m.db"), retry_later=1)
        with Mirror(config(cw, tmp_path), store=store) as mirror:
            assert mirror.log_incoming(MARIA, "oi")
            assert eventually(lambda: store.failures["retry_later"] == 0)
            cw.faults.outage = False
            assert eventually(lambda: mirror.stats()["queued"] == 0, timeout=15)
        assert contents(cw) == ["oi"]


def test_switching_a_new_file_to_wal_retries_while_another_process_holds_it(
    tmp_path, monkeypatch
):
    """Many processes opening one new file at once: SQLite may answer "database is locked"
    to the WAL switch without waiting (2 of 100 processes, measured). Injected here."""
    refusals = {"left": 3}

    class Refusing(sqlite3.Connection):
        def execute(self, sql, *args):
            if sql.startswith("PRAGMA journal_mode") and refusals["left"] > 0:
                refusals["left"] -= 1
                raise sqlite3.OperationalError("database is locked")
            return super().execute(sql, *args)

    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite_module.sqlite3, "connect",
                        lambda *a, **k: real_connect(*a, factory=Refusing, **k))
    store = SQLiteStore(str(tmp_path / "new.db"))
    assert refusals["left"] == 0
    assert store.schema_version == len(sqlite_module.MIGRATIONS)
    assert store._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_switching_to_wal_gives_up_after_the_busy_timeout(tmp_path, monkeypatch):
    class AlwaysLocked(sqlite3.Connection):
        def execute(self, sql, *args):
            if sql.startswith("PRAGMA journal_mode"):
                raise sqlite3.OperationalError("database is locked")
            return super().execute(sql, *args)

    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite_module.sqlite3, "connect",
                        lambda *a, **k: real_connect(*a, factory=AlwaysLocked, **k))
    with pytest.raises(StoreError, match="locked"):
        SQLiteStore(str(tmp_path / "new.db"), busy_timeout=0.2)


EXIT_WITH_BACKLOG = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s %(message)s")
from chatwoot_mirror import log_to_chatwoot
for i in range(200):
    log_to_chatwoot(f"55119876543{i:02d}", f"oi {i}", "ola")
"""


def test_exiting_with_a_backlog_is_quiet(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATWOOT_")}
    env.update(PYTHONPATH=str(ROOT), CHATWOOT_URL="http://127.0.0.1:9", CHATWOOT_INBOX_ID="abc",
               CHATWOOT_MIRROR_DB=str(tmp_path / "m.db"), CHATWOOT_RETRY_BASE_SECONDS="0.01",
               CHATWOOT_RETRY_MAX_SECONDS="0.05", CHATWOOT_DRAIN_SECONDS="1")
    done = subprocess.run([sys.executable, "-c", EXIT_WITH_BACKLOG], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "Traceback" not in done.stderr
    assert "cannot schedule new futures" not in done.stderr
    assert "Error submitting job" not in done.stderr
    # the backlog stays in the store for the next process
    assert SQLiteStore(str(tmp_path / "m.db")).outbox_counts(0).queued == 400
