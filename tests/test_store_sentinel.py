"""Redis Sentinel (issue #28): the store follows the master the Sentinels name, and a
failover mid-drain loses and doubles nothing. Real processes: a master, a replica and
three Sentinels (conftest.SentinelSet), failed over by ``SENTINEL FAILOVER`` or by
killing the master."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from conftest import SentinelSet, eventually, need_redis
from test_outbox import assert_each_once_in_order, config
from test_store_faults import CONTACTS, log_round

from chatwoot_mirror import Mirror
from chatwoot_mirror.errors import ConfigError
from chatwoot_mirror.store import OutboxRow, open_store, parse_store_url
from chatwoot_mirror.store.redis import sentinel_spec
from chatwoot_mirror.testing import FakeChatwoot, Faults


def test_a_sentinel_url_names_its_sentinels_service_db_and_password():
    spec = sentinel_spec("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2/bots/3")
    assert spec.nodes == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    assert (spec.service, spec.db, spec.password) == ("bots", 3, "s3cret")
    for wrong in ("redis+sentinel://10.0.0.1:26379", "redis+sentinel://h:x/bots",
                  "redis+sentinel://h:26379/bots/zero"):
        with pytest.raises(ConfigError) as caught:
            parse_store_url(wrong)
        assert caught.value.variable == "CHATWOOT_MIRROR_STORE"


@pytest.mark.parametrize("how", ["sentinel failover", "master killed"])
def test_a_failover_mid_drain_loses_and_doubles_nothing(tmp_path, how):
    need_redis()
    sentinels = SentinelSet(tmp_path / "set")
    try:
        with FakeChatwoot(faults=Faults(latency=0.01)) as cw:
            # wait_replicas=1: a write counts once the replica has it, so the promoted
            # replica holds every claim and completion the old master confirmed
            settings = config(cw, str(tmp_path / "unused.db"),
                              store_url=sentinels.url + "?wait_replicas=1", claim_ttl_seconds=2)
            results: list[bool] = []
            with Mirror(settings) as mirror:
                results += log_round(mirror, 0, 6)
                assert eventually(lambda: len(cw.messages()) >= 4, 60)
                writer = threading.Thread(target=lambda: results.extend(
                    log_round(mirror, 6, 20)))
                writer.start()
                old = sentinels.master
                if how == "master killed":
                    old.kill()
                else:
                    sentinels.ask("SENTINEL", "FAILOVER", SentinelSet.SERVICE)
                sentinels.wait_until(lambda: sentinels.master_port() == sentinels.replica.port,
                                     120)
                if how == "master killed":
                    # with wait_replicas=1 and no replica left no write counts: they wait
                    # in the spill until the old master, restarted as its supervisor
                    # would, rejoins as the new master's replica
                    old.start()
                writer.join(120)
                assert mirror.flush(120)
                assert mirror.stats()["spilled"] == 0
            assert results and all(results)
            assert_each_once_in_order(cw, CONTACTS, 20)
    finally:
        sentinels.stop()


def test_doctor_never_shows_the_sentinels_password(tmp_path):
    from conftest import free_port

    from chatwoot_mirror.doctor import _store

    url = (f"redis+sentinel://:redis-pw-1@127.0.0.1:{free_port()}/mymaster/0"
           "?sentinel_password=sentinel-pw-2&prefix=bot:")
    with FakeChatwoot() as cw:
        checks = _store(config(cw, str(tmp_path / "x.db"), store_url=url))
    shown = " ".join(c.detail + c.fix for c in checks)
    assert "prefix=bot" in shown  # the URL is shown...
    assert "redis-pw-1" not in shown and "sentinel-pw-2" not in shown  # ...without either


def test_a_row_queued_only_on_the_master_keeps_its_spilled_copy(tmp_path):
    """The host's enqueue reaches the master but not its replica (stalled): it is
    spilled, maybe written. The mover then hears "row key already queued" from the
    master. That answer used to drop the spilled copy, and a failover right after lost
    the exchange (issue #28's Sentinel test, 1 run in 3 under load). It counts now only
    once the replica confirms it: until then the copy stays in the spill."""
    import redis

    need_redis()
    sentinels = SentinelSet(tmp_path / "set")
    store = None
    try:
        store = open_store(sentinels.url + "?wait_replicas=1&prefix=fence:",
                           spill=str(tmp_path / "spill.db"))
        master = redis.Redis(port=sentinels.master.port)
        os.kill(sentinels.replica.process.pid, signal.SIGSTOP)  # replication stalls
        try:
            row = OutboxRow(key="k1", contact_key="wa-1", payload="{}", created_at=time.time())
            assert store.enqueue([row]) == [True]  # spilled, maybe written
            assert store.spilled()[0] == 1
            assert master.exists("fence:q:wa-1")  # the master has it, the replica not
            # the mover asks the master (the circuit's probe): "already queued", unconfirmed
            def tried() -> bool:
                store.move_spilled()
                return bool(master.exists("fence:fence")) or store.spilled()[0] == 0
            assert eventually(tried, 60)
            assert store.spilled()[0] == 1  # the copy is kept
        finally:
            os.kill(sentinels.replica.process.pid, signal.SIGCONT)
        # the replica confirms the queued row: the copy may go now, and goes once
        assert eventually(lambda: store.move_spilled() >= 0 and store.spilled()[0] == 0, 60)
        claimed = store.claim("w", 30, 10, time.time() + 1)
        assert [r.key for r in claimed] == ["k1"]
    finally:
        if store is not None:
            store.close()
        sentinels.stop()
