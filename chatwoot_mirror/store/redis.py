"""Redis store (``redis://`` and ``rediss://``): one truth for several hosts.

Every write that a read decides is one Lua script, so it is atomic across hosts; keys
carry a prefix (``?prefix=`` in the URL, default ``chatwoot-mirror:``) so that one Redis
serves several bots. The layout (``P`` is the prefix):

* ``P row:{key}`` hash, one per queued or dead row; ``P q:{contact}`` sorted set of the
  contact's queued row keys by id (delivery order); ``P queued`` by creation time (flush,
  counts); ``P dead`` by id; ``P ids`` the id counter;
* ``P sched:{contact}`` hash (``next``, ``owner``, ``expires``) and ``P due`` sorted set
  of contacts by when they may next be claimed: ``next``, or the claim's expiry while one
  is held, so a held contact is never due and a lapsed one is; ``P claims`` by expiry;
  ``P owned:{owner}`` the contacts an owner holds (renewals);
* ``P uniq:{key}`` and ``P seen:{name}``: seen unique keys and names, with Redis expiry;
* ``P contact:{key}``, ``P handoff:{key}`` (+ ``P handoffs:{state}`` sets), ``P lock:{name}``,
  ``P kv:{scope}\\0{key}`` (with Redis expiry at the value's own expiry).

Only the queue itself grows without expiry. The outbox is as durable as the Redis
persistence configuration: see :meth:`RedisStore.durability_warning`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError, StoreError
from .base import SEEN_RETENTION, ContactRecord, HandoffRecord, OutboxCounts, OutboxRow, Store

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # pragma: no cover - the extra is not installed
    redis = None  # type: ignore[assignment]

T = TypeVar("T")
DEFAULT_PREFIX = "chatwoot-mirror:"

# Optional strings travel to Lua as "n" (None) or "s" + the value.
_LUA_HELPERS = """
local p = ARGV[1]
local function opt(a) if a == 'n' then return false end return string.sub(a, 2) end
"""

_SAVE_CONTACT = _LUA_HELPERS + """
local h = p .. 'contact:' .. ARGV[2]
local instance, identity, contact_id = opt(ARGV[5]), opt(ARGV[4]), opt(ARGV[3])
local exists = redis.call('EXISTS', h) == 1
local old = redis.call('HGET', h, 'instance')
if not (exists and old == instance) then
  -- ids learned from another Chatwoot mean nothing here: the row starts empty
  redis.call('HDEL', h, 'conversation_id', 'last')
end
redis.call('HSET', h, 'source_id', ARGV[6])
if contact_id then redis.call('HSET', h, 'contact_id', contact_id)
else redis.call('HDEL', h, 'contact_id') end
if identity then redis.call('HSET', h, 'identity', identity) end
if instance then redis.call('HSET', h, 'instance', instance)
else redis.call('HDEL', h, 'instance') end
return 1
"""

_SET_CONVERSATION = _LUA_HELPERS + """
local h = p .. 'contact:' .. ARGV[2]
if redis.call('EXISTS', h) == 0 then return 0 end
redis.call('HSET', h, 'conversation_id', ARGV[3])
return 1
"""

_FORGET_CONVERSATION = _LUA_HELPERS + """
local h = p .. 'contact:' .. ARGV[2]
if redis.call('HGET', h, 'conversation_id') ~= ARGV[3] then return 0 end
redis.call('HDEL', h, 'conversation_id')
return 1
"""

_RAISE_LAST = """
local function raise_last(h, id)
  if redis.call('EXISTS', h) == 0 then return end
  local old = tonumber(redis.call('HGET', h, 'last') or '0')
  if id > old then redis.call('HSET', h, 'last', id) end
end
"""

_SET_LAST = _LUA_HELPERS + _RAISE_LAST + """
raise_last(p .. 'contact:' .. ARGV[2], tonumber(ARGV[3]))
return 1
"""

_ACQUIRE = _LUA_HELPERS + """
local k = p .. 'lock:' .. ARGV[2]
local holder = redis.call('GET', k)
if holder and holder ~= ARGV[3] then return 0 end
redis.call('SET', k, ARGV[3], 'PX', ARGV[4])
return 1
"""

_RELEASE_LOCK = _LUA_HELPERS + """
local k = p .. 'lock:' .. ARGV[2]
if redis.call('GET', k) == ARGV[3] then redis.call('DEL', k) end
return 1
"""

# ARGV: prefix, retention seconds, count, then 5 per row: key, contact, payload, unique, at
_ENQUEUE = _LUA_HELPERS + """
local n = tonumber(ARGV[3])
local seen = {}
for i = 0, n - 1 do
  local key = ARGV[4 + i * 5]
  if seen[key] or redis.call('EXISTS', p .. 'row:' .. key) == 1 then
    return redis.error_reply('row key already queued: ' .. key)
  end
  seen[key] = true
end
local out = {}
for i = 0, n - 1 do
  local b = 4 + i * 5
  local key, contact, payload, unique, at = ARGV[b], ARGV[b+1], ARGV[b+2], opt(ARGV[b+3]), ARGV[b+4]
  local fresh = true
  if unique then
    fresh = redis.call('SET', p .. 'uniq:' .. unique, at, 'NX', 'EX', ARGV[2])
  end
  if fresh then
    local id = redis.call('INCR', p .. 'ids')
    local row = {'contact', contact, 'payload', payload, 'created_at', at, 'id', id,
                 'attempts', 0, 'uncertain', 0}
    if unique then row[#row + 1] = 'unique'; row[#row + 1] = unique end
    redis.call('HSET', p .. 'row:' .. key, unpack(row))
    redis.call('ZADD', p .. 'q:' .. contact, id, key)
    redis.call('ZADD', p .. 'queued', at, key)
    local s = p .. 'sched:' .. contact
    if redis.call('EXISTS', s) == 0 then
      redis.call('HSET', s, 'next', at)
      redis.call('ZADD', p .. 'due', at, contact)
    end
    out[#out + 1] = id
  else
    out[#out + 1] = 0
  end
end
return out
"""

# Holding a claim: the contact is not due again before the claim's expiry (nor before its
# own next attempt), and counts as in flight until then. Shared by claim and renewal.
_HOLD = """
local function hold(contact, owner, expires)
  local s = p .. 'sched:' .. contact
  local nxt = tonumber(redis.call('HGET', s, 'next') or expires)
  redis.call('HSET', s, 'owner', owner, 'expires', expires)
  redis.call('ZADD', p .. 'due', math.max(nxt, expires), contact)
  redis.call('ZADD', p .. 'claims', expires, contact)
end
"""

_CLAIM = _LUA_HELPERS + _HOLD + """
local owner, ttl, limit, now = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local due = redis.call('ZRANGEBYSCORE', p .. 'due', '-inf', now, 'LIMIT', 0, 1)
if #due == 0 then return {} end
local contact = due[1]
local s = p .. 'sched:' .. contact
local keys = redis.call('ZRANGE', p .. 'q:' .. contact, 0, limit - 1)
if #keys == 0 then  -- only dead rows left: nothing to deliver
  redis.call('ZREM', p .. 'due', contact)
  redis.call('ZREM', p .. 'claims', contact)
  redis.call('DEL', s)
  return {}
end
local previous = redis.call('HGET', s, 'owner')
if previous then redis.call('SREM', p .. 'owned:' .. previous, contact) end
hold(contact, owner, now + ttl)
redis.call('SADD', p .. 'owned:' .. owner, contact)
redis.call('EXPIRE', p .. 'owned:' .. owner, math.ceil(ttl * 4) + 60)
local out = {}
for _, key in ipairs(keys) do
  local row = p .. 'row:' .. key
  -- the previous owner's claim lapsed mid-delivery: any of these may have arrived
  if previous then redis.call('HSET', row, 'uncertain', 1) end
  local fields = redis.call('HGETALL', row)
  fields[#fields + 1] = 'key'
  fields[#fields + 1] = key
  out[#out + 1] = fields
end
return out
"""

_RENEW = _LUA_HELPERS + _HOLD + """
local ttl, now, count = tonumber(ARGV[2]), tonumber(ARGV[3]), 0
for i = 4, #ARGV do
  local owner = ARGV[i]
  local owned = p .. 'owned:' .. owner
  for _, contact in ipairs(redis.call('SMEMBERS', owned)) do
    if redis.call('HGET', p .. 'sched:' .. contact, 'owner') == owner then
      hold(contact, owner, now + ttl)
      count = count + 1
    else
      redis.call('SREM', owned, contact)
    end
  end
  redis.call('EXPIRE', owned, math.ceil(ttl * 4) + 60)
end
return count
"""

# Shared by every script that needs the claim: the row's contact, if ``owner`` holds it.
_HOLDS = """
local function holds(key, owner)
  local contact = redis.call('HGET', p .. 'row:' .. key, 'contact')
  if not contact then return false end
  if redis.call('HGET', p .. 'sched:' .. contact, 'owner') ~= owner then return false end
  return contact
end
local function unclaim(contact, owner)
  local s = p .. 'sched:' .. contact
  redis.call('HDEL', s, 'owner', 'expires')
  redis.call('ZADD', p .. 'due', redis.call('HGET', s, 'next') or 0, contact)
  redis.call('ZREM', p .. 'claims', contact)
  redis.call('SREM', p .. 'owned:' .. owner, contact)
end
local function drop_if_empty(contact, owner)
  if redis.call('ZCARD', p .. 'q:' .. contact) == 0 then
    redis.call('DEL', p .. 'sched:' .. contact)
    redis.call('ZREM', p .. 'due', contact)
    redis.call('ZREM', p .. 'claims', contact)
    redis.call('SREM', p .. 'owned:' .. owner, contact)
  end
end
"""

_COMPLETE = _LUA_HELPERS + _RAISE_LAST + _HOLDS + """
local key, owner, message_id = ARGV[2], ARGV[3], tonumber(ARGV[4])
local contact = holds(key, owner)
if not contact then return 0 end
redis.call('DEL', p .. 'row:' .. key)
redis.call('ZREM', p .. 'q:' .. contact, key)
redis.call('ZREM', p .. 'queued', key)
if message_id > 0 then raise_last(p .. 'contact:' .. contact, message_id) end
drop_if_empty(contact, owner)
return 1
"""

_RETRY_LATER = _LUA_HELPERS + _HOLDS + """
local key, owner = ARGV[2], ARGV[3]
local contact = holds(key, owner)
if not contact then return 0 end
local row = p .. 'row:' .. key
redis.call('HINCRBY', row, 'attempts', ARGV[6])
redis.call('HSET', row, 'last_error', ARGV[5])
if ARGV[7] == '1' then redis.call('HSET', row, 'uncertain', 1) end
redis.call('HSET', p .. 'sched:' .. contact, 'next', ARGV[4])
unclaim(contact, owner)
return 1
"""

_RELEASE = _LUA_HELPERS + _HOLDS + """
local contact, owner = ARGV[2], ARGV[3]
if redis.call('HGET', p .. 'sched:' .. contact, 'owner') ~= owner then return 0 end
unclaim(contact, owner)
return 1
"""

_DEAD_LETTER = _LUA_HELPERS + _HOLDS + """
local key, owner = ARGV[2], ARGV[3]
local contact = holds(key, owner)
if not contact then return 0 end
local row = p .. 'row:' .. key
redis.call('HSET', row, 'state', 'dead', 'last_error', ARGV[4])
redis.call('ZREM', p .. 'q:' .. contact, key)
redis.call('ZREM', p .. 'queued', key)
redis.call('ZADD', p .. 'dead', redis.call('HGET', row, 'id'), key)
drop_if_empty(contact, owner)
return 1
"""

# ARGV: prefix, now, all ('1') or not, then the keys
_RETRY_DEAD = _LUA_HELPERS + """
local now = tonumber(ARGV[2])
local keys = {}
if ARGV[3] == '1' then keys = redis.call('ZRANGE', p .. 'dead', 0, -1)
else for i = 4, #ARGV do keys[#keys + 1] = ARGV[i] end end
local count = 0
for _, key in ipairs(keys) do
  local row = p .. 'row:' .. key
  if redis.call('ZREM', p .. 'dead', key) == 1 then
    local f = redis.call('HMGET', row, 'contact', 'id', 'created_at')
    redis.call('HDEL', row, 'state')
    redis.call('HSET', row, 'attempts', 0)
    redis.call('ZADD', p .. 'q:' .. f[1], f[2], key)
    redis.call('ZADD', p .. 'queued', f[3], key)
    local s = p .. 'sched:' .. f[1]
    local nxt = math.min(tonumber(redis.call('HGET', s, 'next') or ARGV[2]), now)
    redis.call('HSET', s, 'next', nxt)
    local expires = tonumber(redis.call('HGET', s, 'expires') or '0')
    if redis.call('HEXISTS', s, 'owner') == 1 then nxt = math.max(nxt, expires) end
    redis.call('ZADD', p .. 'due', nxt, f[1])
    count = count + 1
  end
end
return count
"""

_PUT_HANDOFF = _LUA_HELPERS + """
local h = p .. 'handoff:' .. ARGV[2]
local expected = opt(ARGV[3])
local current = redis.call('HGET', h, 'version')
if expected then
  if current ~= expected then return 0 end
  redis.call('SREM', p .. 'handoffs:' .. redis.call('HGET', h, 'state'), ARGV[2])
elseif current then
  return 0
end
redis.call('HSET', h, 'version', ARGV[4], 'state', ARGV[5], 'record', ARGV[6])
redis.call('SADD', p .. 'handoffs:' .. ARGV[5], ARGV[2])
return 1
"""

_DELETE_VALUE = _LUA_HELPERS + """
local k = ARGV[2]
local expected = opt(ARGV[3])
if expected and redis.call('HGET', k, 'v') ~= expected then return 0 end
return redis.call('DEL', k)
"""

_PRUNE = _LUA_HELPERS + """
local before, count = tonumber(ARGV[2]), 0
for i = 3, #ARGV do
  local at = redis.call('GET', ARGV[i])
  if at and tonumber(at) < before then
    redis.call('DEL', ARGV[i])
    if string.find(ARGV[i], p .. 'uniq:', 1, true) == 1 then count = count + 1 end
  end
end
return count
"""


def _opt(value: object) -> str:
    return "n" if value is None else "s" + str(value)


class RedisStore(Store):
    """The shared store of several hosts. ``url``: ``redis://[:password@]host:port/db``
    or ``rediss://`` (TLS), optionally with ``?prefix=name:`` for the keys."""

    def __init__(self, url: str, *, socket_timeout: float = 2.0,
                 seen_retention: float = SEEN_RETENTION) -> None:
        if redis is None:
            raise ConfigError("CHATWOOT_MIRROR_STORE",
                              "redis:// needs the redis package: pip install "
                              "'chatwoot-mirror[redis]'")
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.prefix = query.pop("prefix", DEFAULT_PREFIX)
        self.url = urlunsplit(parts._replace(query=urlencode(query)))
        self.seen_retention = seen_retention
        self._closed = False
        # Short timeouts and one immediate retry (a pooled connection Redis dropped on a
        # restart): the host's log_* call must not hang on a Redis that is down.
        # Any: redis-py types every answer bytes | str; decode_responses makes them str
        self._redis: Any = redis.Redis.from_url(
            self.url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1), health_check_interval=30, decode_responses=True)
        scripts: dict[str, Any] = {name: self._redis.register_script(body) for name, body in {
            "save_contact": _SAVE_CONTACT, "set_conversation": _SET_CONVERSATION,
            "forget_conversation": _FORGET_CONVERSATION, "set_last": _SET_LAST,
            "acquire": _ACQUIRE, "release_lock": _RELEASE_LOCK, "enqueue": _ENQUEUE,
            "claim": _CLAIM, "renew": _RENEW, "complete": _COMPLETE,
            "retry_later": _RETRY_LATER, "release": _RELEASE, "dead_letter": _DEAD_LETTER,
            "retry_dead": _RETRY_DEAD, "put_handoff": _PUT_HANDOFF,
            "delete_value": _DELETE_VALUE, "prune": _PRUNE,
        }.items()}
        self._scripts = scripts

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise StoreError("store is closed")
        try:
            return fn()
        except redis.RedisError as exc:
            raise StoreError(f"redis store failed: {type(exc).__name__}: {exc}") from exc

    def _run(self, script: str, *args: object) -> Any:
        return self._call(lambda: self._scripts[script](args=[self.prefix, *args]))

    def _key(self, *parts: str) -> str:
        return self.prefix + "".join(parts)

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
        if not rows:
            return []
        now = time.time()
        args: list[object] = [int(self.seen_retention), len(rows)]
        for row in rows:
            args += [row.key, row.contact_key, row.payload, _opt(row.unique_key),
                     repr(row.created_at or now)]
        ids = self._run("enqueue", *args)
        for row, outbox_id in zip(rows, ids, strict=True):
            row.id = int(outbox_id) or None
        return [bool(outbox_id) for outbox_id in ids]

    def claim(self, owner: str, ttl: float, limit: int, now: float) -> list[OutboxRow]:
        return [_row(_pairs(fields)) for fields in
                self._run("claim", owner, repr(ttl), limit, repr(now))]

    def renew_claims(self, owners: Sequence[str], ttl: float, now: float) -> int:
        if not owners:
            return 0
        return int(self._run("renew", repr(ttl), repr(now), *owners))

    def complete(self, key: str, owner: str, chatwoot_message_id: int | None = None) -> bool:
        return bool(self._run("complete", key, owner, chatwoot_message_id or 0))

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
        def read() -> list[OutboxRow]:
            keys = self._redis.zrange(self._key("dead"), 0, limit - 1)
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(self._key("row:", key))
            return [_row({**fields, "key": key})
                    for key, fields in zip(keys, pipe.execute(), strict=True) if fields]
        return self._call(read)

    def outbox_counts(self, now: float) -> OutboxCounts:
        def read() -> OutboxCounts:
            pipe = self._redis.pipeline(transaction=True)
            pipe.zcard(self._key("queued"))
            pipe.zrange(self._key("queued"), 0, 0, withscores=True)
            pipe.zcard(self._key("dead"))
            pipe.zcount(self._key("claims"), now, "+inf")
            queued, oldest, dead, in_flight = pipe.execute()
            return OutboxCounts(queued, min(in_flight, queued), dead,
                                float(oldest[0][1]) if oldest else None)
        return self._call(read)

    def next_due_at(self, now: float) -> float | None:
        first = self._call(lambda: self._redis.zrange(self._key("due"), 0, 0, withscores=True))
        return float(first[0][1]) if first else None

    def pending_before(self, at: float) -> int:
        return int(self._call(lambda: self._redis.zcount(self._key("queued"), "-inf", at)))

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
        name = self._value_key(scope, key)

        def write() -> None:
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(name)
            pipe.hset(name, mapping={"v": value, **(
                {"exp": repr(expires_at)} if expires_at is not None else {})})
            if expires_at is not None:
                # Redis forgets it on its own a little after its expiry (memory bounded)
                pipe.pexpireat(name, int(expires_at * 1000) + 1000)
            pipe.execute()
        self._call(write)

    def delete_value(self, scope: str, key: str, expected: str | None = None) -> bool:
        return bool(self._run("delete_value", self._value_key(scope, key), _opt(expected)))

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

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._redis.close()
        except redis.RedisError:
            pass


def _int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _pairs(fields: list[str]) -> dict[str, str]:
    return dict(zip(fields[::2], fields[1::2], strict=True))


def _row(data: dict[str, str]) -> OutboxRow:
    return OutboxRow(
        key=data["key"], contact_key=data["contact"], payload=data["payload"],
        unique_key=data.get("unique"), created_at=float(data["created_at"]),
        attempts=int(data.get("attempts", 0)), uncertain=data.get("uncertain") == "1",
        last_error=data.get("last_error"), id=int(data["id"]),
    )


_HANDOFF_FIELDS = ("state", "reason", "changed_at", "last_human_at", "conversation_id",
                   "bot_turns", "version")


def _handoff_text(record: HandoffRecord) -> str:
    return json.dumps([record.contact_key] + [getattr(record, f) for f in _HANDOFF_FIELDS])


def _handoff(text: str) -> HandoffRecord:
    return HandoffRecord(*json.loads(text))
