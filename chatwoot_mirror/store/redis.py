"""Redis store (``redis://`` and ``rediss://``): one truth for several hosts.

Every write that a read decides is one Lua script, so it is atomic across hosts; keys
carry a prefix (``?prefix=`` in the URL, default ``chatwoot-mirror:``) so that one Redis
serves several bots. The layout (``P`` is the prefix):

* ``P q:{contact}`` list of the contact's queued rows in delivery (id) order, each one
  MessagePack element packed by the scripts (:mod:`._redis_lua`); ``P k:{contact}`` hash of
  its row keys (queued and dead); ``P queued`` their count; ``P heads`` sorted set of
  contacts by their oldest row's creation time (flush, the oldest age); ``P dead`` dead row
  keys by id, their rows in the ``P deadrows`` hash; ``P ids`` the id counter;
* ``P sched:{contact}`` hash (``next``, ``owner``, ``expires``; ``tail``/``skew``: whether
  creation order still follows queue order) and ``P due`` sorted set of contacts by when
  they may next be claimed: ``next``, or the claim's expiry while one is held, so a held
  contact is never due and a lapsed one is; ``P claims`` by expiry; ``P owned:{owner}``
  the contacts an owner holds (renewals);
* ``P uniq:{key}`` and ``P seen:{name}``: seen unique keys and names, with Redis expiry;
* ``P contact:{key}``, ``P handoff:{key}`` (+ ``P handoffs:{state}`` sets), ``P lock:{name}``,
  ``P kv:{scope}\\0{key}`` (with Redis expiry at the value's own expiry).

Only the queue itself grows without expiry. The outbox is as durable as the Redis
persistence configuration: see :meth:`RedisStore.durability_warning`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError, RowKeyTaken, StoreError, StoreUnavailable
from . import _redis_lua as lua
from .base import (
    SEEN_RETENTION,
    ContactRecord,
    HandoffRecord,
    OutboxCounts,
    OutboxRow,
    Store,
    ValueItem,
)

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # pragma: no cover - the extra is not installed
    redis = None  # type: ignore[assignment]

T = TypeVar("T")
log = logging.getLogger("chatwoot_mirror.store")
DEFAULT_PREFIX = "chatwoot-mirror:"
#: seconds any one Redis command may take (``?socket_timeout=`` in the URL)
DEFAULT_TIMEOUT = 1.0
#: how long a write waits for ``?wait_replicas=`` replicas to confirm it (milliseconds)
WAIT_MS = 500
#: scripts whose writes need no replica: a read, and the shared pace (losing a few of its
#: tokens to a failover costs a few requests of pace, never a message)
_NOT_REPLICATED = frozenset({"dead_letters", "take_tokens"})

def _opt(value: object) -> str:
    return "n" if value is None else "s" + str(value)


class RedisStore(Store):
    """The shared store of several hosts. ``url``: ``redis://[:password@]host:port/db``
    or ``rediss://`` (TLS), or ``redis+sentinel://[:password@]host:port[,host:port]/service/db``
    (the master Sentinel names; ``?sentinel_password=`` when the Sentinels have one of their
    own); optionally ``?prefix=name:`` for the keys, ``?socket_timeout=`` (seconds) and
    ``?wait_replicas=N`` (a write counts once N replicas have it)."""

    def __init__(self, url: str, *, socket_timeout: float = DEFAULT_TIMEOUT,
                 seen_retention: float = SEEN_RETENTION) -> None:
        if redis is None:
            raise ConfigError("CHATWOOT_MIRROR_STORE",
                              "redis:// needs the redis package: pip install "
                              "'chatwoot-mirror[redis]'")
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.prefix = query.pop("prefix", DEFAULT_PREFIX)
        socket_timeout = _seconds(query.pop("socket_timeout", None), socket_timeout)
        self.wait_replicas = _count(query.pop("wait_replicas", None))
        sentinel_password = query.pop("sentinel_password", None)
        self.url = urlunsplit(parts._replace(query=urlencode(query)))
        self.seen_retention = seen_retention
        self._closed = False
        self._sentinel: Any = None
        # Short timeouts, and one immediate retry only when the connection failed (a pooled
        # connection Redis dropped on a restart, a master Sentinel just replaced), never
        # after a timeout: the host's log_* call must not hang on a Redis that is down or
        # silent (the spill takes over).
        options: dict[str, Any] = dict(
            socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            health_check_interval=30, decode_responses=True)
        # Any: redis-py types every answer bytes | str; decode_responses makes them str
        self._redis: Any
        if parts.scheme.endswith("+sentinel"):
            self._redis = self._master(parts, sentinel_password, options)
        else:
            self._redis = redis.Redis.from_url(self.url, **options)
        #: the epoch key as this store last saw it (see maintain)
        self._epoch: str | None = None
        self._check_password()
        self._register_scripts()

    @classmethod
    def on_client(cls, client: Any, prefix: str, *, url: str,
                  seen_retention: float = SEEN_RETENTION) -> RedisStore:
        """A store of the keys under ``prefix`` over a client its caller made and closes:
        one shard of a Redis Cluster (:mod:`.cluster`), its prefix holding the hash tag
        that puts every key of the shard in one slot."""
        self = cls.__new__(cls)
        self.prefix, self.url, self.seen_retention = prefix, url, seen_retention
        self.wait_replicas = 0
        self._closed, self._sentinel, self._redis, self._epoch = False, None, client, None
        self._register_scripts()
        return self

    def _register_scripts(self) -> None:
        scripts: dict[str, Any] = {name: self._redis.register_script(body) for name, body in {
            "save_contact": lua.SAVE_CONTACT, "set_conversation": lua.SET_CONVERSATION,
            "forget_conversation": lua.FORGET_CONVERSATION, "set_last": lua.SET_LAST,
            "acquire": lua.ACQUIRE, "release_lock": lua.RELEASE_LOCK,
            "enqueue": lua.ENQUEUE, "claim": lua.CLAIM, "renew": lua.RENEW,
            "complete": lua.COMPLETE, "retry_later": lua.RETRY_LATER,
            "release": lua.RELEASE, "dead_letter": lua.DEAD_LETTER,
            "retry_dead": lua.RETRY_DEAD, "dead_letters": lua.DEAD_LETTERS,
            "put_handoff": lua.PUT_HANDOFF, "delete_value": lua.DELETE_VALUE,
            "add_value": lua.ADD_VALUE, "take_tokens": lua.TAKE_TOKENS,
            "set_values": lua.SET_VALUES,
            "prune": lua.PRUNE,
        }.items()}
        self._scripts = scripts

    def _master(self, parts: Any, sentinel_password: str | None,
                options: dict[str, Any]) -> Any:
        """The current master of a Sentinel-watched service: redis-py asks the Sentinels
        for its address on every new connection, so after a failover the next connection
        (the retry of the command that met the old one) reaches the new master."""
        from redis.sentinel import Sentinel

        spec = sentinel_spec(urlunsplit(parts))
        tls = {"ssl": True} if parts.scheme.startswith("rediss") else {}
        sentinel_options = {k: options[k] for k in ("socket_timeout", "socket_connect_timeout")}
        self._sentinel = Sentinel(
            spec.nodes, sentinel_kwargs={**sentinel_options, **tls,
                                         "password": sentinel_password},
            **sentinel_options)
        return self._sentinel.master_for(
            spec.service, db=spec.db, username=spec.username, password=spec.password,
            **options, **tls)

    def _check_password(self) -> None:
        """A wrong password fails at start-up, naming the variable (never the password);
        a Redis that is merely down or slow now does not: the spill holds writes."""
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            error = _translate(exc)
            if not isinstance(error, StoreUnavailable):
                self._redis.close()
                raise ConfigError("CHATWOOT_MIRROR_STORE", f"{error}; correct the password "
                                  "(or user) in the URL") from None
            return
        try:
            self.maintain()  # the epoch now: a later loss of the data is noticed
        except StoreError:
            pass  # noticed from the next upkeep on

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise StoreError("store is closed")
        try:
            return fn()
        except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise _translate(exc) from exc

    def _run(self, script: str, *args: object) -> Any:
        if self.wait_replicas and script not in _NOT_REPLICATED:
            return self._call(lambda: self._run_replicated(script, [self.prefix, *args]))
        return self._call(lambda: self._scripts[script](keys=self._route,
                                                        args=[self.prefix, *args]))

    def _run_replicated(self, script: str, args: list[object]) -> Any:
        """``?wait_replicas=N``: the script, then Redis's WAIT on the same connection (WAIT
        waits for what its own connection wrote). A write fewer than N replicas confirm
        within WAIT_MS (a replica down, this master being demoted by a failover) does not
        count: it is :class:`StoreUnavailable` with ``maybe_applied``, so an enqueue goes to
        the spill marked uncertain and a claim delivers nothing, as when the answer is
        lost. A failover then loses no write the caller was told had happened."""
        return self._pipelined([(script, args)])[0]

    def _pipelined(self, calls: list[tuple[str, list[object]]]) -> list[Any]:
        """Run the scripts in order in one round trip (and, with ``?wait_replicas=``, the
        WAIT after them on the same connection); raises the first one's error.

        EVALSHA rather than redis-py's Script objects in a pipeline, which ask SCRIPT EXISTS
        first: a second round trip each time. A script this server does not hold yet
        (NOSCRIPT: it did not run) is loaded and run once more (a restarted server)."""
        results, acked = self._send(calls)
        missing = [i for i, result in enumerate(results)
                   if isinstance(result, redis.exceptions.NoScriptError)]
        if missing:
            for i in missing:
                self._redis.script_load(self._scripts[calls[i][0]].script)
            again, acked_again = self._send([calls[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
            acked = [acked, acked_again]
        # The replicas first: an answer about what is stored (a row key already queued)
        # counts only once they hold it too (the enqueue script writes a fence for that)
        if self.wait_replicas:
            for count in acked if isinstance(acked, list) else [acked]:
                if isinstance(count, Exception) or int(count) < self.wait_replicas:
                    raise StoreUnavailable(
                        f"redis write reached {_acked(count)} of "
                        f"wait_replicas={self.wait_replicas} replicas within {WAIT_MS} ms",
                        maybe_applied=True)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    def _send(self, calls: list[tuple[str, list[object]]]) -> tuple[list[Any], Any]:
        pipe = self._redis.pipeline(transaction=False)
        for name, args in calls:
            pipe.evalsha(self._scripts[name].sha, len(self._route), *self._route, *args)
        if self.wait_replicas:
            pipe.execute_command("WAIT", self.wait_replicas, WAIT_MS)
        answers = pipe.execute(raise_on_error=False)
        return answers[:len(calls)], answers[len(calls)] if self.wait_replicas else None

    def _key(self, *parts: str) -> str:
        return self.prefix + "".join(parts)

    def key(self, name: str) -> str:
        """The Redis key of one of the layout's structures (``due``, ``heads``: see the
        module docstring), for a caller that reads several shards in one pipeline."""
        return self._key(name)

    @property
    def _route(self) -> list[str]:
        # the scripts name their keys from ARGV's prefix; KEYS[1] is only the prefix, so
        # a Cluster client sends each script to the node that holds the prefix's slot
        return [self.prefix]

    # -- contacts ---------------------------------------------------------------------------

    def get_contact(self, key: str) -> ContactRecord | None:
        data = self._call(lambda: self._redis.hgetall(self._key("contact:", key)))
        if not data:
            return None
        return ContactRecord(
            key, data["source_id"], _int(data.get("contact_id")),
            _int(data.get("conversation_id")), data.get("identity"), data.get("instance"))

    def save_contact(
        self, key: str, source_id: str, contact_id: int | None, identity: str | None = None,
        *, instance: str | None = None,
    ) -> None:
        self._run("save_contact", key, _opt(contact_id), _opt(identity), _opt(instance),
                  source_id)

    def set_conversation(self, key: str, conversation_id: int) -> None:
        if not self._run("set_conversation", key, conversation_id):
            raise StoreError(f"set_conversation for unknown contact {key}")

    def forget_conversation(self, key: str, conversation_id: int) -> bool:
        return bool(self._run("forget_conversation", key, conversation_id))

    def set_last_message_id(self, key: str, message_id: int) -> None:
        self._run("set_last", key, message_id)

    def last_message_id(self, key: str) -> int | None:
        return _int(self._call(lambda: self._redis.hget(self._key("contact:", key), "last")))

    # -- locks ------------------------------------------------------------------------------

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        return bool(self._run("acquire", name, owner, max(1, int(ttl * 1000))))

    def release_lock(self, name: str, owner: str) -> None:
        self._run("release_lock", name, owner)

    # -- outbox -----------------------------------------------------------------------------

    def enqueue(self, rows: Sequence[OutboxRow]) -> list[bool]:
        return self._enqueue(rows, moved=False)

    def enqueue_moved(self, rows: Sequence[OutboxRow]) -> list[bool]:
        return self._enqueue(rows, moved=True)

    def _enqueue(self, rows: Sequence[OutboxRow], *, moved: bool) -> list[bool]:
        if not rows:
            return []
        now = time.time()
        args: list[object] = [int(self.seen_retention), len(rows)]
        for row in rows:
            args += [row.key, row.contact_key, row.payload, _opt(row.unique_key),
                     repr(row.created_at or now),
                     (1 if row.uncertain else 0) + (2 if moved else 0)]
        ids = self._run("enqueue", *args)
        for row, outbox_id in zip(rows, ids, strict=True):
            row.id = int(outbox_id) or None
        return [bool(outbox_id) for outbox_id in ids]

    def claim(self, owner: str, ttl: float, limit: int, now: float) -> list[OutboxRow]:
        return [_row(fields) for fields in
                self._run("claim", owner, repr(ttl), limit, repr(now))]

    def renew_claims(self, owners: Sequence[str], ttl: float, now: float) -> int:
        if not owners:
            return 0
        return int(self._run("renew", repr(ttl), repr(now), *owners))

    def complete(self, key: str, owner: str, chatwoot_message_id: int | None = None) -> bool:
        return bool(self._run("complete", key, owner, chatwoot_message_id or 0))

    def complete_with_values(
        self, key: str, owner: str, chatwoot_message_id: int | None,
        values: Sequence[ValueItem],
    ) -> bool:
        """Both scripts in one round trip: one per delivered message, not two."""
        if not values:
            return self.complete(key, owner, chatwoot_message_id)
        calls = [("set_values", self._values_args(values)),
                 ("complete", [self.prefix, key, owner, chatwoot_message_id or 0])]
        return bool(self._call(lambda: self._pipelined(calls))[1])

    def retry_later(
        self, key: str, owner: str, at: float, error: str, *, uncertain: bool, attempt: bool
    ) -> None:
        self._run("retry_later", key, owner, repr(at), error, 1 if attempt else 0,
                  "1" if uncertain else "0")

    def release(self, contact_key: str, owner: str) -> None:
        self._run("release", contact_key, owner)

    def prune_seen(self, before: float) -> int:
        """Forget unique keys and names first seen before ``before`` (Redis also expires
        them on its own after ``seen_retention``); values expire natively."""
        count = 0
        for pattern in ("uniq:*", "seen:*"):
            batch: list[str] = []
            match = self._key(pattern).replace("[", "\\[")
            names: list[str] = self._call(partial(self._scan, match))
            for name in names:
                batch.append(name)
                if len(batch) >= 500:
                    count += int(self._run("prune", repr(before), *batch))
                    batch = []
            if batch:
                count += int(self._run("prune", repr(before), *batch))
        return count

    def _scan(self, match: str) -> list[str]:
        return list(self._redis.scan_iter(match=match, count=1000))

    def dead_letter(self, key: str, owner: str, reason: str) -> None:
        self._run("dead_letter", key, owner, reason)

    def retry_dead(self, keys: Sequence[str] | None = None) -> int:
        if keys is not None and not keys:
            return 0
        return int(self._run("retry_dead", repr(time.time()), "1" if keys is None else "0",
                             *(keys or ())))

    def dead_letters(self, limit: int = 100) -> list[OutboxRow]:
        return [_row(fields) for fields in self._run("dead_letters", limit)]

    def outbox_counts(self, now: float) -> OutboxCounts:
        def read() -> OutboxCounts:
            pipe = self._redis.pipeline(transaction=False)  # Cluster: one slot, no MULTI
            pipe.get(self._key("queued"))
            pipe.zrange(self._key("heads"), 0, 0, withscores=True)
            pipe.zcard(self._key("dead"))
            pipe.zcount(self._key("claims"), now, "+inf")
            queued, oldest, dead, in_flight = pipe.execute()
            queued = int(queued or 0)
            return OutboxCounts(queued, min(in_flight, queued), dead,
                                float(oldest[0][1]) if oldest else None)
        return self._call(read)

    def next_due_at(self, now: float) -> float | None:
        first = self._call(lambda: self._redis.zrange(self._key("due"), 0, 0, withscores=True))
        return float(first[0][1]) if first else None

    def has_queued_before(self, at: float) -> bool:
        first = self._call(lambda: self._redis.zrange(self._key("heads"), 0, 0,
                                                      withscores=True))
        return bool(first) and float(first[0][1]) <= at

    # -- handoff ----------------------------------------------------------------------------

    def get_handoff(self, contact_key: str) -> HandoffRecord | None:
        text = self._call(lambda: self._redis.hget(self._key("handoff:", contact_key),
                                                   "record"))
        return _handoff(text) if text else None

    def put_handoff(self, record: HandoffRecord, expected_version: int | None) -> bool:
        return bool(self._run("put_handoff", record.contact_key, _opt(expected_version),
                              record.version, record.state, _handoff_text(record)))

    def list_handoffs(self, state: str) -> list[HandoffRecord]:
        def read() -> list[HandoffRecord]:
            keys = sorted(self._redis.smembers(self._key("handoffs:", state)))
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.hget(self._key("handoff:", key), "record")
            records = [_handoff(text) for text in pipe.execute() if text]
            return [r for r in records if r.state == state]
        return self._call(read)

    def first_seen(self, name: str, now: float) -> bool:
        return bool(self._call(lambda: self._redis.set(
            self._key("seen:", name), repr(now), nx=True, ex=int(self.seen_retention))))

    # -- values -----------------------------------------------------------------------------

    def _value_key(self, scope: str, key: str) -> str:
        return self._key("kv:", scope, "\0", key)

    def get_value(self, scope: str, key: str, now: float) -> str | None:
        data = self._call(lambda: self._redis.hmget(self._value_key(scope, key), "v", "exp"))
        value, expires = data
        if value is None or (expires and float(expires) <= now):
            return None
        return str(value)

    def set_value(
        self, scope: str, key: str, value: str, expires_at: float | None = None
    ) -> None:
        self.set_values([(scope, key, value, expires_at)])

    def set_values(self, items: Sequence[tuple[str, str, str, float | None]]) -> None:
        """One script, one round trip (the message-id map writes two or three per message)."""
        if not items:
            return
        args = self._values_args(items)
        self._call(lambda: self._scripts["set_values"](keys=self._route, args=args))

    def _values_args(self, items: Sequence[tuple[str, str, str, float | None]]) -> list[object]:
        args: list[object] = [self.prefix, len(items)]
        for scope, key, value, expires_at in items:
            # Redis forgets it on its own a little after its expiry (memory bounded)
            args += [self._value_key(scope, key), value,
                     "n" if expires_at is None else repr(expires_at),
                     0 if expires_at is None else int(expires_at * 1000) + 1000]
        return args

    def add_value(self, scope: str, key: str, value: str, now: float) -> str:
        return str(self._run("add_value", self._value_key(scope, key), value, repr(now)))

    def delete_value(self, scope: str, key: str, expected: str | None = None) -> bool:
        return bool(self._run("delete_value", self._value_key(scope, key), _opt(expected)))

    # -- pace ---------------------------------------------------------------------------------

    def take_tokens(self, bucket: str, per_minute: float, capacity: float,
                    count: int = 1) -> float | None:
        # not through _run: pacing needs no replica's confirmation
        return float(self._call(lambda: self._scripts["take_tokens"](keys=self._route, args=[
            self.prefix, bucket, repr(per_minute), repr(capacity), count])))

    # -- operations -------------------------------------------------------------------------

    def durability_warning(self) -> str | None:
        def read() -> dict[str, str]:
            settings: dict[str, str] = {}
            for name in ("appendonly", "save"):
                settings.update(self._redis.config_get(name))
            return settings
        try:
            settings = self._call(read)
        except StoreError as exc:
            return f"could not read Redis persistence settings ({exc}); check appendonly"
        if settings.get("appendonly") == "yes":
            return None
        if not settings.get("save"):
            return ("Redis has no persistence (appendonly no, save ''): a Redis restart "
                    "loses every queued message; set appendonly yes")
        return ("Redis persists by snapshot only (appendonly no): a Redis restart loses "
                "the messages queued since the last snapshot; set appendonly yes and "
                "appendfsync everysec")

    def eviction_warning(self) -> str | None:
        try:
            policy = self._call(lambda: self._redis.config_get("maxmemory-policy")).get(
                "maxmemory-policy", "")
        except StoreError as exc:
            return f"could not read maxmemory-policy ({exc}); it must be noeviction"
        if policy == "noeviction":
            return None
        return (f"Redis evicts keys under memory pressure (maxmemory-policy {policy}): "
                "queued messages can vanish without a trace; set maxmemory-policy noeviction "
                "(then a full Redis refuses writes, and the local spill keeps them)")

    def replication(self) -> str | None:
        def read() -> tuple[dict[str, Any], dict[str, str]]:
            return (self._redis.info("replication"),
                    self._redis.config_get("min-replicas-to-write"))
        try:
            info, settings = self._call(read)
        except StoreError:
            return None
        role = info.get("role", "?")
        replicas = int(info.get("connected_slaves", 0) or 0)
        needed = settings.get("min-replicas-to-write", "0")
        text = f"role {role}, {replicas} connected replica(s), min-replicas-to-write {needed}"
        if replicas == 0:
            text += ": a lost Redis machine loses what it held (a replica, with Sentinel, "
            text += "keeps it)"
        return text

    def maintain(self) -> None:
        """Notice a Redis that lost its data while this mirror used it: the epoch key this
        store wrote is gone (restarted without persistence, flushed, evicted, or failed
        over to an empty replica). Logged loudly once and recorded for ``doctor``."""
        epoch = self._call(lambda: self._redis.get(self._key("epoch")))
        if epoch is not None and epoch == self._epoch:
            return
        if epoch is None:
            fresh = f"{time.time():.3f}-{uuid.uuid4().hex[:8]}"
            if self._call(lambda: self._redis.set(self._key("epoch"), fresh, nx=True)):
                epoch = fresh
            else:  # another host wrote it first
                epoch = self._call(lambda: self._redis.get(self._key("epoch")))
        if self._epoch is not None:
            log.error("redis lost its data: what was queued before may be gone (restarted "
                      "without persistence, flushed, evicted or failed over to an empty "
                      "replica) prefix=%s", self.prefix)
            record = json.dumps({"at": time.time(), "epoch_was": self._epoch})
            self._call(lambda: self._redis.set(self._key("lost"), record,
                                               ex=int(self.seen_retention)))
        self._epoch = epoch

    def data_loss(self) -> str | None:
        try:
            text = self._call(lambda: self._redis.get(self._key("lost")))
        except StoreError:
            return None
        if not text:
            return None
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(json.loads(text)["at"]))
        return (f"Redis lost its data at {when} while a mirror used it (restarted without "
                "persistence, flushed, evicted or failed over to an empty replica): "
                "messages queued before then may never reach Chatwoot")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._redis.close()
            for node in self._sentinel.sentinels if self._sentinel is not None else ():
                node.close()
        except redis.RedisError:
            pass


#: replies of a Redis that cannot take the command now but will soon: a failed snapshot
#: blocking writes, too few replicas (``min-replicas-to-write``); redis-py gives the others
#: (out of memory under ``noeviction``, a replica, a failover, a reshard) their own types
_BUSY_REPLIES = ("MISCONF", "NOREPLICAS")


def _busy() -> tuple[type[Exception], ...]:
    errors = redis.exceptions
    return (errors.OutOfMemoryError, errors.ReadOnlyError, errors.MasterDownError,
            errors.ClusterDownError, errors.TryAgainError)


def _translate(exc: Exception) -> StoreError:
    """The :class:`StoreError` a redis-py error means; its message never holds the URL."""
    text = f"redis store failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in str(exc) \
            or "NOAUTH" in str(exc):
        return StoreError(f"redis store refused the password: {type(exc).__name__}")
    if isinstance(exc, redis.exceptions.RedisClusterException):
        # no node holds the slot now, or none answers: the command was not run
        return StoreUnavailable(text)
    if isinstance(exc, redis.TimeoutError):
        # sent, and no answer in time: Redis may have run it
        return StoreUnavailable(text, maybe_applied=True)
    if isinstance(exc, redis.ConnectionError):
        # refused or still loading: surely not run; a connection lost mid-command: maybe
        refused = isinstance(exc, redis.BusyLoadingError) or "connecting to" in str(exc)
        return StoreUnavailable(text, maybe_applied=not refused)
    message = str(exc)
    if message.startswith("row key already queued"):
        return RowKeyTaken(text)
    if isinstance(exc, _busy()) or (isinstance(exc, redis.ResponseError)
                                    and message.split(" ", 1)[0] in _BUSY_REPLIES):
        return StoreUnavailable(text)
    return StoreError(text)


@dataclass(frozen=True)
class SentinelSpec:
    """What a ``redis+sentinel://`` URL names."""

    nodes: list[tuple[str, int]]
    service: str
    db: int
    username: str | None
    password: str | None


def sentinel_spec(url: str) -> SentinelSpec:
    """Read ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``
    (port 26379 by default); :class:`ConfigError` naming ``CHATWOOT_MIRROR_STORE``."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = []
    for node in hosts.split(","):
        host, _, port = node.strip().rpartition(":") if ":" in node else (node, "", "26379")
        if not host or not port.isdigit():
            raise ConfigError("CHATWOOT_MIRROR_STORE", f"names a Sentinel that is not "
                              f"host:port ({node!r}); use redis+sentinel://host:26379,"
                              "host2:26379/service_name/0")
        nodes.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigError("CHATWOOT_MIRROR_STORE", "names no Sentinel service: use "
                          "redis+sentinel://host:26379,host2:26379/service_name/0")
    return SentinelSpec(nodes, unquote(path[0]), int(path[1]) if len(path) == 2 else 0,
                        unquote(username) or None, unquote(password) or None)


def _acked(answer: object) -> str:
    """WAIT's answer as a count, or what it said instead ("WAIT cannot be used with
    replica instances": this server was demoted)."""
    return "0 (WAIT failed)" if isinstance(answer, Exception) else str(int(answer))  # type: ignore[call-overload]


def _count(text: str | None) -> int:
    if text is None:
        return 0
    if not text.isdigit() or int(text) > 16:
        raise ConfigError("CHATWOOT_MIRROR_STORE",
                          f"wait_replicas must be 0 to 16, not {text!r}")
    return int(text)


def _seconds(text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 60:
        raise ConfigError("CHATWOOT_MIRROR_STORE",
                          f"socket_timeout must be 0.05 to 60 seconds, not {text!r}")
    return value


def _int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _row(fields: list[str | None]) -> OutboxRow:
    key, outbox_id, created_at, attempts, uncertain, unique, error, payload, contact = fields
    return OutboxRow(
        key=str(key), contact_key=str(contact), payload=str(payload), unique_key=unique,
        created_at=float(str(created_at)), attempts=int(str(attempts)),
        uncertain=uncertain == "1", last_error=error, id=int(str(outbox_id)),
    )


_HANDOFF_FIELDS = ("state", "reason", "changed_at", "last_human_at", "conversation_id",
                   "bot_turns", "version")


def _handoff_text(record: HandoffRecord) -> str:
    return json.dumps([record.contact_key] + [getattr(record, f) for f in _HANDOFF_FIELDS])


def _handoff(text: str) -> HandoffRecord:
    return HandoffRecord(*json.loads(text))
