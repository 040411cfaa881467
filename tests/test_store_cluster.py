"""Redis Cluster (issue #28): the store sharded by hash tags so every script runs in one
slot. Real processes: three masters made by ``redis-cli --cluster create``
(conftest.RedisClusterSet), a master SIGKILLed mid-drain and restarted with its
append-only file, and the whole cluster down when the mirror starts. The backend contract
suite also runs on the cluster (tests/test_store_contract.py)."""

from __future__ import annotations

import threading

import pytest
from conftest import RedisClusterSet, eventually, need_redis
from test_outbox import assert_each_once_in_order, config
from test_store_faults import CONTACTS, log_round

from chatwoot_mirror import Mirror
from chatwoot_mirror.errors import ConfigError
from chatwoot_mirror.store import open_store
from chatwoot_mirror.store.cluster import SLOTS, shard_tags
from chatwoot_mirror.testing import FakeChatwoot, Faults


@pytest.mark.parametrize("url", [
    "redis+cluster://10.0.0.1",  # no port
    "redis+cluster://10.0.0.1:7000?prefix=a{b}:",  # its own hash tag
    "redis+cluster://10.0.0.1:7000?wait_replicas=1",
    "redis+cluster://10.0.0.1:7000?shards=0",
])
def test_a_wrong_cluster_url_fails_at_start_naming_the_variable(url):
    pytest.importorskip("redis")
    with pytest.raises(ConfigError) as caught:
        open_store(url)
    assert caught.value.variable == "CHATWOOT_MIRROR_STORE"


def test_shard_tags_spread_over_the_slot_range_and_hold_a_shards_keys_in_one_slot():
    from redis.crc import key_slot

    for count in (1, 3, 8, 16):
        tags = shard_tags(count)
        assert len(set(tags)) == count
        for shard, tag in enumerate(tags):
            slot = key_slot(f"x:{{{tag}}}:due".encode())
            assert shard * SLOTS // count <= slot < (shard + 1) * SLOTS // count
            assert key_slot(f"x:{{{tag}}}:q:wa-5511".encode()) == slot


def _node_of(cluster: RedisClusterSet, mirror: Mirror, contact_key: str):
    """The master that holds ``contact_key``'s shard."""
    import redis
    from redis.crc import key_slot

    shard = mirror.store.primary._shard(contact_key)  # type: ignore[attr-defined]
    slot = key_slot(shard.key("due").encode())
    client = redis.Redis(port=cluster.nodes[0].port, decode_responses=True)
    try:
        for low, high, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if low <= slot <= high:
                return next(n for n in cluster.nodes if n.port == int(master[1]))
    finally:
        client.close()
    raise AssertionError(f"no node holds slot {slot}")


def test_a_master_killed_mid_drain_and_restarted_loses_and_doubles_nothing(tmp_path):
    need_redis()
    cluster = RedisClusterSet(tmp_path / "cluster")
    try:
        with FakeChatwoot(faults=Faults(latency=0.01)) as cw:
            settings = config(cw, str(tmp_path / "unused.db"), store_url=cluster.url,
                              claim_ttl_seconds=2)
            results: list[bool] = []
            with Mirror(settings) as mirror:
                results += log_round(mirror, 0, 6)
                assert eventually(lambda: len(cw.messages()) >= 4, 60)
                victim = _node_of(cluster, mirror, "wa-" + CONTACTS[0])
                writer = threading.Thread(target=lambda: results.extend(
                    log_round(mirror, 6, 20)))
                writer.start()
                victim.kill()  # SIGKILL, no replica: its slots are away until it returns
                assert eventually(lambda: mirror.stats()["spilled"] > 0, 60)
                victim.start()  # its append-only file and nodes.conf: same slots, same data
                cluster.wait_until_ok()
                writer.join(120)
                assert mirror.flush(120)
                assert mirror.stats()["spilled"] == 0
            assert results and all(results)
            assert_each_once_in_order(cw, CONTACTS, 20)
    finally:
        cluster.stop()


def test_a_cluster_down_at_start_keeps_every_exchange_until_it_comes(tmp_path):
    need_redis()
    cluster = RedisClusterSet(tmp_path / "cluster")
    try:
        for node in cluster.nodes:
            node.stop()
        with FakeChatwoot() as cw:
            settings = config(cw, str(tmp_path / "unused.db"), store_url=cluster.url)
            with Mirror(settings) as mirror:  # starts: the spill takes the writes
                assert all(log_round(mirror, 0, 3))
                assert mirror.stats()["spilled"] == 3 * len(CONTACTS) * 2
                assert cw.messages() == []
                for node in cluster.nodes:
                    node.start()
                cluster.wait_until_ok()
                assert mirror.flush(120)
                assert mirror.stats()["spilled"] == 0
            assert_each_once_in_order(cw, CONTACTS, 3)
    finally:
        cluster.stop()


def test_doctor_reads_every_master_and_never_shows_the_password(tmp_path, redis_cluster):
    from chatwoot_mirror.doctor import _store

    url = redis_cluster.url.replace("redis+cluster://", "redis+cluster://:not-shown-pw@")
    with FakeChatwoot() as cw:
        checks = {c.name: c for c in _store(config(cw, str(tmp_path / "x.db"),
                                                    store_url=url + "?prefix=doc:"))}
    assert checks["store"].ok and "not-shown-pw" not in checks["store"].detail
    assert checks["replicas"].detail.startswith("each of 3 masters: role master, 0 connected")
    assert checks["outbox"].detail == "0 queued"
