"""Redis Cluster store (``redis+cluster://``, ``rediss+cluster://``): the Redis store,
sharded so that every script runs in one hash slot.

Cluster refuses a script whose keys live in different slots, and the Redis store's
scripts touch a contact's keys together with global structures (the due contacts, the
claims, the counters). So the keyspace is cut in ``?shards=N`` (default 8) shards, each a
whole :class:`~.redis.RedisStore` whose prefix carries a hash tag (``P{tag}:``): every key
of a shard is in one slot, and every script of a shard runs where that slot lives.

Routing, decided here and only here:

* a contact's rows, records and handoff go to the shard of its key (CRC-32 of the key
  modulo N), so a contact's order and dedup hold exactly as on one Redis;
* a value, lock, seen name or pace bucket goes to the shard of its name;
* a claim asks the shards in turn, from a rotating start, for a contact that is due;
  counts, due times and handoff lists are read from every shard and combined;
* a row's later calls (complete, retry, dead letter) go to the shard that handed it out,
  remembered per claimed row; a row this process did not claim is looked for in every
  shard (each call is a no-op in a shard where the owner holds no such row).

The shard tags are chosen so the N slots spread evenly over the slot range, hence over
the masters of a cluster made with ``redis-cli --cluster create``. N is part of the data
layout: changing ``?shards=`` while anything is queued strands it (``doctor`` shows the
queue; drain first).
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import ConfigError, StoreError, StoreUnavailable
from .base import SEEN_RETENTION, ContactRecord, HandoffRecord, OutboxCounts, OutboxRow, Store
from .redis import DEFAULT_PREFIX, DEFAULT_TIMEOUT, RedisStore, _translate

T = TypeVar("T")
VARIABLE = "CHATWOOT_MIRROR_STORE"
DEFAULT_SHARDS = 8
SLOTS = 16384
#: rows this process claimed, remembered for their later calls (bounded: a claim that
#: lapsed is forgotten in time, and its row is then looked for in every shard)
HELD_ROWS = 20000


def shard_tags(count: int) -> list[str]:
    """``count`` hash tags whose slots fall in ``count`` equal ranges of the slot space."""
    from redis.crc import key_slot

    tags = []
    for shard in range(count):
        low, high = shard * SLOTS // count, (shard + 1) * SLOTS // count
        candidate = 0
        while not low <= key_slot(f"{shard}.{candidate}".encode()) < high:
            candidate += 1
        tags.append(f"{shard}.{candidate}")
    return tags


def _number(value: str) -> int:
    return zlib.crc32(value.encode("utf-8"))


class RedisClusterStore(Store):
    """The shared store of several hosts on a Redis Cluster.

    ``url``: ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (any nodes of
    the cluster; it finds the rest), ``rediss+cluster://`` for TLS; ``?prefix=``,
    ``?socket_timeout=`` and ``?shards=`` (see the module docstring). ``?wait_replicas=`` is
    refused: a shard's WAIT would count one master's replicas only."""

    def __init__(self, url: str, *, socket_timeout: float = DEFAULT_TIMEOUT,
                 seen_retention: float = SEEN_RETENTION) -> None:
        from .redis import redis

        if redis is None:
            raise ConfigError(VARIABLE, "redis+cluster:// needs the redis package: pip "
                                        "install 'chatwoot-mirror[redis]'")
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.prefix = query.pop("prefix", DEFAULT_PREFIX)
        if "{" in self.prefix or "}" in self.prefix:
            raise ConfigError(VARIABLE, "?prefix= must not hold { or }: the cluster store "
                                        "puts its own hash tags after it")
        if query.pop("wait_replicas", "0") not in ("", "0"):
            raise ConfigError(VARIABLE, "?wait_replicas= is not supported on a Redis Cluster "
                                        "(each master has its own replicas)")
        try:
            self.count = int(query.pop("shards", DEFAULT_SHARDS))
            socket_timeout = float(query.pop("socket_timeout", socket_timeout))
        except ValueError:
            raise ConfigError(VARIABLE, "?shards= and ?socket_timeout= must be numbers") from None
        if not 1 <= self.count <= 256 or socket_timeout <= 0:
            raise ConfigError(VARIABLE, "?shards= must be 1 to 256, ?socket_timeout= above 0")
        self.url = url
        self.seen_retention = seen_retention
        userinfo, _, hosts = parts.netloc.rpartition("@")
        username, _, password = userinfo.partition(":")
        nodes = []
        for node in hosts.split(","):
            host, _, port = node.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(VARIABLE, f"names a cluster node without host:port: {node!r}"
                                  " (use redis+cluster://host:7000,host:7001)")
            nodes.append(redis.cluster.ClusterNode(host, int(port)))
        self._options: dict[str, Any] = dict(
            startup_nodes=nodes, username=unquote(username) or None,
            password=unquote(password) or None, socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout, decode_responses=True,
            # no retry of a command: a script sent again after a timeout could run twice
            # (the spill's circuit, not the client, waits out a node's absence)
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
            ssl=parts.scheme.startswith("rediss"))
        self._tags = shard_tags(self.count)
        self._lock = threading.Lock()
        self._client: Any = None
        self._shards: list[RedisStore] = []
        self._closed = False
        self._held: OrderedDict[str, int] = OrderedDict()
        try:
            self._connect()
        except StoreUnavailable:
            pass  # down at start: the spill holds writes, and the next call connects
        except StoreError as exc:
            raise ConfigError(VARIABLE, f"{exc}; correct the password (or user) in the URL") \
                from None

    # -- plumbing ---------------------------------------------------------------------------

    def _connect(self) -> list[RedisStore]:
        """The shards, connecting first when no client could be made yet (the cluster was
        down at start-up): redis-py reads the slot map when the client is made."""
        from .redis import redis

        with self._lock:
            if self._closed:
                raise StoreError("store is closed")
            if self._client is None:
                try:
                    client = redis.cluster.RedisCluster(**self._options)
                except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
                    raise _translate(exc) from exc
                self._shards = [RedisStore.on_client(client, f"{self.prefix}{{{tag}}}:",
                                                     url=self.url,
                                                     seen_retention=self.seen_retention)
                                for tag in self._tags]
                self._client = client
            return self._shards

    def _shard(self, name: str) -> RedisStore:
        return self._connect()[_number(name) % self.count]

    def _each(self, call: Callable[[RedisStore], T]) -> list[T]:
        return [call(shard) for shard in self._connect()]

    def _hold(self, rows: list[OutboxRow], index: int) -> list[OutboxRow]:
        """Rows from shard ``index``: their ids made unique across shards, their keys
        remembered for the calls that follow a claim."""
        with self._lock:
            for row in rows:
                if row.id is not None:
                    row.id = row.id * self.count + index
                self._held[row.key] = index
                self._held.move_to_end(row.key)
            while len(self._held) > HELD_ROWS:
                self._held.popitem(last=False)
        return rows

    def _on_row(self, key: str, call: Callable[[RedisStore], T], *,
                done: Callable[[T], bool] = lambda _: False) -> T | None:
        """``call`` in the shard that handed out row ``key``, or in each shard until one
        says it is ``done`` (a row this process did not claim)."""
        with self._lock:
            index = self._held.pop(key, None)
        shards = self._connect()
        if index is not None:
            return call(shards[index])
        result: T | None = None
        for shard in shards:
            result = call(shard)
            if done(result):
                break
        return result

    # -- contacts ---------------------------------------------------------------------------

    def get_contact(self, key: str) -> ContactRecord | None:
        return self._shard(key).get_contact(key)

    def save_contact(
        self, key: str, source_id: str, contact_id: int | None, identity: str | None = None,
        *, instance: str | None = None,
    ) -> None:
        self._shard(key).save_contact(key, source_id, contact_id, identity, instance=instance)

    def set_conversation(self, key: str, conversation_id: int) -> None:
        self._shard(key).set_conversation(key, conversation_id)

    def forget_conversation(self, key: str, conversation_id: int) -> bool:
        return self._shard(key).forget_conversation(key, conversation_id)

    def set_last_message_id(self, key: str, message_id: int) -> None:
        self._shard(key).set_last_message_id(key, message_id)

    def last_message_id(self, key: str) -> int | None:
        return self._shard(key).last_message_id(key)

    # -- locks ------------------------------------------------------------------------------

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        return self._shard(name).acquire_lock(name, owner, ttl)

    def release_lock(self, name: str, owner: str) -> None:
        self._shard(name).release_lock(name, owner)

    # -- outbox -----------------------------------------------------------------------------

    def enqueue(self, rows: Sequence[OutboxRow]) -> list[bool]:
        return self._enqueue(rows, lambda shard, part: shard.enqueue(part))

    def enqueue_moved(self, rows: Sequence[OutboxRow]) -> list[bool]:
        return self._enqueue(rows, lambda shard, part: shard.enqueue_moved(part))

    def _enqueue(self, rows: Sequence[OutboxRow],
                 call: Callable[[RedisStore, list[OutboxRow]], list[bool]]) -> list[bool]:
        """Each contact's rows in one script of its shard. Rows of several contacts in
        one call are atomic per contact (every caller enqueues one contact's rows)."""
        shards = self._connect()
        parts: dict[int, list[int]] = {}
        for position, row in enumerate(rows):
            parts.setdefault(_number(row.contact_key) % self.count, []).append(position)
        fresh = [False] * len(rows)
        for index, positions in parts.items():
            part = [rows[p] for p in positions]
            for position, admitted in zip(positions, call(shards[index], part), strict=True):
                fresh[position] = admitted
            for row in part:
                if row.id is not None:
                    row.id = row.id * self.count + index
        return fresh

    def claim(self, owner: str, ttl: float, limit: int, now: float) -> list[OutboxRow]:
        """The contact due soonest over all shards, as on one Redis: the shards' first due
        times in one pipelined read, then a claim in the shard of the soonest (the next
        when another host took it meanwhile)."""
        shards = self._connect()
        # ties go by contact key, as one sorted set orders them
        due = sorted((first[1], first[0], index) for index, first in
                     enumerate(self._firsts("due")) if first is not None and first[1] <= now)
        for _, _, index in due:
            rows = shards[index].claim(owner, ttl, limit, now)
            if rows:
                return self._hold(rows, index)
        return []

    def _firsts(self, name: str) -> list[tuple[str, float] | None]:
        """The first member and its score of sorted set ``name`` in every shard (``due``,
        ``heads``)."""
        from .redis import redis

        shards = self._connect()

        def read() -> list[tuple[str, float] | None]:
            pipe = self._client.pipeline(transaction=False)
            for shard in shards:
                pipe.zrange(shard.key(name), 0, 0, withscores=True)
            return [(str(first[0][0]), float(first[0][1])) if first else None
                    for first in pipe.execute()]
        try:
            return read()
        except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise _translate(exc) from exc

    def renew_claims(self, owners: Sequence[str], ttl: float, now: float) -> int:
        return sum(self._each(lambda shard: shard.renew_claims(owners, ttl, now)))

    def complete(self, key: str, owner: str, chatwoot_message_id: int | None = None) -> bool:
        return bool(self._on_row(key, lambda shard: shard.complete(
            key, owner, chatwoot_message_id), done=bool))

    def retry_later(
        self, key: str, owner: str, at: float, error: str, *, uncertain: bool, attempt: bool
    ) -> None:
        self._on_row(key, lambda shard: shard.retry_later(
            key, owner, at, error, uncertain=uncertain, attempt=attempt))

    def release(self, contact_key: str, owner: str) -> None:
        self._shard(contact_key).release(contact_key, owner)

    def prune_seen(self, before: float) -> int:
        return sum(self._each(lambda shard: shard.prune_seen(before)))

    def dead_letter(self, key: str, owner: str, reason: str) -> None:
        self._on_row(key, lambda shard: shard.dead_letter(key, owner, reason))

    def retry_dead(self, keys: Sequence[str] | None = None) -> int:
        return sum(self._each(lambda shard: shard.retry_dead(keys)))

    def dead_letters(self, limit: int = 100) -> list[OutboxRow]:
        rows: list[OutboxRow] = []
        for index, shard in enumerate(self._connect()):
            for row in shard.dead_letters(limit):
                row.id = None if row.id is None else row.id * self.count + index
                rows.append(row)
        return sorted(rows, key=lambda row: (row.created_at or 0, row.id or 0))[:limit]

    def outbox_counts(self, now: float) -> OutboxCounts:
        counts = self._each(lambda shard: shard.outbox_counts(now))
        oldest = [c.oldest_queued_at for c in counts if c.oldest_queued_at is not None]
        return OutboxCounts(sum(c.queued for c in counts), sum(c.in_flight for c in counts),
                            sum(c.dead for c in counts), min(oldest) if oldest else None)

    def next_due_at(self, now: float) -> float | None:
        due = [first[1] for first in self._firsts("due") if first is not None]
        return min(due) if due else None

    def has_queued_before(self, at: float) -> bool:
        return any(head is not None and head[1] <= at for head in self._firsts("heads"))

    # -- handoff ----------------------------------------------------------------------------

    def get_handoff(self, contact_key: str) -> HandoffRecord | None:
        return self._shard(contact_key).get_handoff(contact_key)

    def put_handoff(self, record: HandoffRecord, expected_version: int | None) -> bool:
        return self._shard(record.contact_key).put_handoff(record, expected_version)

    def list_handoffs(self, state: str) -> list[HandoffRecord]:
        records = [r for part in self._each(lambda shard: shard.list_handoffs(state))
                   for r in part]
        return sorted(records, key=lambda record: record.contact_key)

    def first_seen(self, name: str, now: float) -> bool:
        return self._shard(name).first_seen(name, now)

    # -- values -----------------------------------------------------------------------------

    @staticmethod
    def _value_name(scope: str, key: str) -> str:
        return f"{scope}\0{key}"

    def get_value(self, scope: str, key: str, now: float) -> str | None:
        return self._shard(self._value_name(scope, key)).get_value(scope, key, now)

    def set_value(
        self, scope: str, key: str, value: str, expires_at: float | None = None
    ) -> None:
        self.set_values([(scope, key, value, expires_at)])

    def set_values(self, items: Sequence[tuple[str, str, str, float | None]]) -> None:
        shards = self._connect()
        parts: dict[int, list[tuple[str, str, str, float | None]]] = {}
        for item in items:
            parts.setdefault(_number(self._value_name(item[0], item[1])) % self.count,
                             []).append(item)
        for index, part in parts.items():
            shards[index].set_values(part)

    def add_value(self, scope: str, key: str, value: str, now: float) -> str:
        return self._shard(self._value_name(scope, key)).add_value(scope, key, value, now)

    def delete_value(self, scope: str, key: str, expected: str | None = None) -> bool:
        return self._shard(self._value_name(scope, key)).delete_value(scope, key, expected)

    def take_tokens(self, bucket: str, per_minute: float, capacity: float,
                    count: int = 1) -> float | None:
        return self._shard(bucket).take_tokens(bucket, per_minute, capacity, count)

    # -- operations -------------------------------------------------------------------------

    def _nodes(self) -> list[tuple[str, RedisStore]]:
        """Each master, as a store whose settings checks read that node."""
        self._connect()
        return [(node.name, RedisStore.on_client(self._client.get_redis_connection(node),
                                                 self.prefix, url=self.url))
                for node in self._client.get_primaries()]

    def _worst(self, check: Callable[[RedisStore], str | None]) -> str | None:
        try:
            nodes = self._nodes()
        except StoreError as exc:
            return f"could not read the cluster's nodes ({exc})"
        for name, node in nodes:
            warning = check(node)
            if warning:
                return f"node {name}: {warning}"
        return None

    def durability_warning(self) -> str | None:
        return self._worst(lambda node: node.durability_warning())

    def eviction_warning(self) -> str | None:
        return self._worst(lambda node: node.eviction_warning())

    def replication(self) -> str | None:
        try:
            nodes = self._nodes()
        except StoreError:
            return None
        texts = {name: node.replication() or "unreadable" for name, node in nodes}
        if len(set(texts.values())) == 1:  # the usual case: every master set up alike
            return f"each of {len(texts)} masters: {next(iter(texts.values()))}"
        return "; ".join(f"{name}: {text}" for name, text in texts.items())

    def maintain(self) -> None:
        self._each(lambda shard: shard.maintain())

    def data_loss(self) -> str | None:
        try:
            losses = [loss for loss in self._each(lambda shard: shard.data_loss()) if loss]
        except StoreError:
            return None
        return losses[0] if losses else None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing; nothing left to report to
                pass

