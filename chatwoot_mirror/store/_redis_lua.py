"""The Lua scripts of the Redis store (:mod:`chatwoot_mirror.store.redis`): each is one
atomic step across hosts. ``ARGV[1]`` is always the key prefix."""

# Optional strings travel to Lua as "n" (None) or "s" + the value.
LUA_HELPERS = """
local p = ARGV[1]
local function opt(a) if a == 'n' then return false end return string.sub(a, 2) end
"""

SAVE_CONTACT = LUA_HELPERS + """
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

SET_CONVERSATION = LUA_HELPERS + """
local h = p .. 'contact:' .. ARGV[2]
if redis.call('EXISTS', h) == 0 then return 0 end
redis.call('HSET', h, 'conversation_id', ARGV[3])
return 1
"""

FORGET_CONVERSATION = LUA_HELPERS + """
local h = p .. 'contact:' .. ARGV[2]
if redis.call('HGET', h, 'conversation_id') ~= ARGV[3] then return 0 end
redis.call('HDEL', h, 'conversation_id')
return 1
"""

RAISE_LAST = """
local function raise_last(h, id)
  if redis.call('EXISTS', h) == 0 then return end
  local old = tonumber(redis.call('HGET', h, 'last') or '0')
  if id > old then redis.call('HSET', h, 'last', id) end
end
"""

SET_LAST = LUA_HELPERS + RAISE_LAST + """
raise_last(p .. 'contact:' .. ARGV[2], tonumber(ARGV[3]))
return 1
"""

ACQUIRE = LUA_HELPERS + """
local k = p .. 'lock:' .. ARGV[2]
local holder = redis.call('GET', k)
if holder and holder ~= ARGV[3] then return 0 end
redis.call('SET', k, ARGV[3], 'PX', ARGV[4])
return 1
"""

RELEASE_LOCK = LUA_HELPERS + """
local k = p .. 'lock:' .. ARGV[2]
if redis.call('GET', k) == ARGV[3] then redis.call('DEL', k) end
return 1
"""

# -- the outbox ------------------------------------------------------------------------------
# A queued row is one MessagePack element of its contact's list, packed by Lua itself:
# {key, id, created_at, attempts, uncertain (0/1), unique|false, last_error|false, payload}
# (a dead row adds its contact). A list of small strings is Redis's most compact
# structure; one hash per row cost about 800 bytes beyond the payload. ``k:{contact}``
# holds the contact's row keys: small per-contact hashes stay compact where one big one
# would not, and a worker always knows which contact it holds.
ROWS = """
-- numbers reach Redis and Python as exact text (Lua's own tostring keeps 14 digits)
local function exact(n) return string.format('%.17g', n) end
local function reply(f, contact)
  return {f[1], tostring(f[2]), exact(f[3]), tostring(f[4]), tostring(f[5]), f[6], f[7],
          f[8], contact}
end
-- index and fields of the row ``key`` in the contact's list; claimed rows are at its head
local function find(q, key)
  local start = 0
  while true do
    local chunk = redis.call('LRANGE', q, start, start + 15)
    if #chunk == 0 then return nil end
    for i, e in ipairs(chunk) do
      local f = cmsgpack.unpack(e)
      if f[1] == key then return start + i - 1, f, e end
    end
    start = start + 16
  end
end
-- the contact's oldest creation time in ``heads`` (flush and the oldest age read it). Rows
-- are created in list order unless clocks disagree or a dead letter came back ("skew"):
-- only then is the whole list read.
local function refresh_head(contact)
  local q, s = p .. 'q:' .. contact, p .. 'sched:' .. contact
  if redis.call('HGET', s, 'skew') == '1' then
    local low = nil
    for _, e in ipairs(redis.call('LRANGE', q, 0, -1)) do
      local c = cmsgpack.unpack(e)[3]
      if not low or c < low then low = c end
    end
    if low then redis.call('ZADD', p .. 'heads', exact(low), contact) end
  else
    local e = redis.call('LINDEX', q, 0)
    if e then redis.call('ZADD', p .. 'heads', exact(cmsgpack.unpack(e)[3]), contact) end
  end
end
-- a row joins the contact's list: creation-time index, order flag, schedule
local function admitted(contact, at, now, inside)
  local s = p .. 'sched:' .. contact
  local head = redis.call('ZSCORE', p .. 'heads', contact)
  if not head or at < tonumber(head) then
    redis.call('ZADD', p .. 'heads', exact(at), contact)
  end
  redis.call('INCR', p .. 'queued')
  if redis.call('EXISTS', s) == 0 then
    redis.call('HSET', s, 'next', now, 'tail', exact(at))
    redis.call('ZADD', p .. 'due', now, contact)
    return
  end
  local tail = tonumber(redis.call('HGET', s, 'tail') or exact(at))
  if inside or at < tail then redis.call('HSET', s, 'skew', 1) end
  if at > tail then redis.call('HSET', s, 'tail', exact(at)) end
end
"""

# ARGV: prefix, retention seconds, count, then 6 per row: key, contact, payload, unique, at,
# flags (1: uncertain, +2: moved from a spill)
ENQUEUE = LUA_HELPERS + ROWS + """
local n = tonumber(ARGV[3])
local seen = {}
for i = 0, n - 1 do
  local key, contact = ARGV[4 + i * 6], ARGV[5 + i * 6]
  if seen[key] or redis.call('HEXISTS', p .. 'k:' .. contact, key) == 1 then
    -- a write, so that a WAIT after this script proves the queued row is on the replicas
    -- too: a spill drops its copy on this answer, and must not for a row that a failover
    -- is about to lose with the old master
    redis.call('INCR', p .. 'fence')
    return redis.error_reply('row key already queued: ' .. key)
  end
  seen[key] = true
end
local out = {}
for i = 0, n - 1 do
  local b = 4 + i * 6
  local key, contact, payload, unique, at = ARGV[b], ARGV[b+1], ARGV[b+2], opt(ARGV[b+3]), ARGV[b+4]
  -- flags: 1 uncertain; 2 a row moved from a spill, never admitted twice under its key
  local flags = tonumber(ARGV[b+5])
  local uncertain = flags % 2
  local fresh = true
  if flags >= 2 then
    fresh = redis.call('SET', p .. 'moved:' .. key, at, 'NX', 'EX', ARGV[2])
  end
  if fresh and unique then
    fresh = redis.call('SET', p .. 'uniq:' .. unique, at, 'NX', 'EX', ARGV[2])
  end
  if fresh then
    local id = redis.call('INCR', p .. 'ids')
    local created = tonumber(at)
    redis.call('RPUSH', p .. 'q:' .. contact,
               cmsgpack.pack({key, id, created, 0, uncertain, unique, false, payload}))
    redis.call('HSET', p .. 'k:' .. contact, key, 1)
    admitted(contact, created, at, false)
    out[#out + 1] = id
  else
    out[#out + 1] = 0
  end
end
return out
"""

# Holding a claim: the contact is not due again before the claim's expiry (nor before its
# own next attempt), and counts as in flight until then. Shared by claim and renewal.
HOLD = """
local function hold(contact, owner, expires)
  local s = p .. 'sched:' .. contact
  local nxt = tonumber(redis.call('HGET', s, 'next') or expires)
  redis.call('HSET', s, 'owner', owner, 'expires', expires)
  redis.call('ZADD', p .. 'due', math.max(nxt, expires), contact)
  redis.call('ZADD', p .. 'claims', expires, contact)
end
"""

CLAIM = LUA_HELPERS + ROWS + HOLD + """
local owner, ttl, limit, now = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local due = redis.call('ZRANGEBYSCORE', p .. 'due', '-inf', now, 'LIMIT', 0, 1)
if #due == 0 then return {} end
local contact = due[1]
local s, q = p .. 'sched:' .. contact, p .. 'q:' .. contact
local rows = redis.call('LRANGE', q, 0, limit - 1)
if #rows == 0 then  -- only dead rows left: nothing to deliver
  redis.call('ZREM', p .. 'due', contact)
  redis.call('ZREM', p .. 'claims', contact)
  redis.call('ZREM', p .. 'heads', contact)
  redis.call('DEL', s)
  return {}
end
local previous = redis.call('HGET', s, 'owner')
if previous then redis.call('SREM', p .. 'owned:' .. previous, contact) end
hold(contact, owner, now + ttl)
redis.call('SADD', p .. 'owned:' .. owner, contact)
redis.call('EXPIRE', p .. 'owned:' .. owner, math.ceil(ttl * 4) + 60)
local out = {}
for i, e in ipairs(rows) do
  local f = cmsgpack.unpack(e)
  -- the previous owner's claim lapsed mid-delivery: any of these may have arrived
  if previous and f[5] ~= 1 then
    f[5] = 1
    redis.call('LSET', q, i - 1, cmsgpack.pack(f))
  end
  out[#out + 1] = reply(f, contact)
end
return out
"""

RENEW = LUA_HELPERS + HOLD + """
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
HOLDS = ROWS + """
local function holds(key, owner)
  for _, contact in ipairs(redis.call('SMEMBERS', p .. 'owned:' .. owner)) do
    if redis.call('HGET', p .. 'sched:' .. contact, 'owner') == owner
        and redis.call('HEXISTS', p .. 'k:' .. contact, key) == 1 then
      return contact
    end
  end
  return false
end
local function unclaim(contact, owner)
  local s = p .. 'sched:' .. contact
  redis.call('HDEL', s, 'owner', 'expires')
  redis.call('ZADD', p .. 'due', redis.call('HGET', s, 'next') or 0, contact)
  redis.call('ZREM', p .. 'claims', contact)
  redis.call('SREM', p .. 'owned:' .. owner, contact)
end
-- a claimed row leaves the queue (delivered or dead)
local function taken(contact, owner, index, e)
  local q = p .. 'q:' .. contact
  if index == 0 then redis.call('LPOP', q) else redis.call('LREM', q, 1, e) end
  redis.call('DECR', p .. 'queued')
  if redis.call('LLEN', q) == 0 then
    redis.call('DEL', p .. 'sched:' .. contact)
    redis.call('ZREM', p .. 'due', contact)
    redis.call('ZREM', p .. 'claims', contact)
    redis.call('ZREM', p .. 'heads', contact)
    redis.call('SREM', p .. 'owned:' .. owner, contact)
  elseif index == 0 or redis.call('HGET', p .. 'sched:' .. contact, 'skew') == '1' then
    refresh_head(contact)
  end
end
"""

COMPLETE = LUA_HELPERS + RAISE_LAST + HOLDS + """
local key, owner, message_id = ARGV[2], ARGV[3], tonumber(ARGV[4])
local contact = holds(key, owner)
if not contact then return 0 end
local index, _, e = find(p .. 'q:' .. contact, key)
if not index then return 0 end
taken(contact, owner, index, e)
redis.call('HDEL', p .. 'k:' .. contact, key)
if message_id > 0 then raise_last(p .. 'contact:' .. contact, message_id) end
return 1
"""

RETRY_LATER = LUA_HELPERS + HOLDS + """
local key, owner = ARGV[2], ARGV[3]
local contact = holds(key, owner)
if not contact then return 0 end
local q = p .. 'q:' .. contact
local index, f = find(q, key)
if not index then return 0 end
f[4] = f[4] + tonumber(ARGV[6])
f[7] = ARGV[5]
if ARGV[7] == '1' then f[5] = 1 end
redis.call('LSET', q, index, cmsgpack.pack(f))
redis.call('HSET', p .. 'sched:' .. contact, 'next', ARGV[4])
unclaim(contact, owner)
return 1
"""

RELEASE = LUA_HELPERS + HOLDS + """
local contact, owner = ARGV[2], ARGV[3]
if redis.call('HGET', p .. 'sched:' .. contact, 'owner') ~= owner then return 0 end
unclaim(contact, owner)
return 1
"""

DEAD_LETTER = LUA_HELPERS + HOLDS + """
local key, owner = ARGV[2], ARGV[3]
local contact = holds(key, owner)
if not contact then return 0 end
local index, f, e = find(p .. 'q:' .. contact, key)
if not index then return 0 end
taken(contact, owner, index, e)
f[7] = ARGV[4]
f[9] = contact
redis.call('HSET', p .. 'deadrows', key, cmsgpack.pack(f))
redis.call('ZADD', p .. 'dead', f[2], key)
return 1
"""

# ARGV: prefix, now, all ('1') or not, then the keys
RETRY_DEAD = LUA_HELPERS + ROWS + """
local now = tonumber(ARGV[2])
local keys = {}
if ARGV[3] == '1' then keys = redis.call('ZRANGE', p .. 'dead', 0, -1)
else for i = 4, #ARGV do keys[#keys + 1] = ARGV[i] end end
local count = 0
for _, key in ipairs(keys) do
  if redis.call('ZREM', p .. 'dead', key) == 1 then
    local f = cmsgpack.unpack(redis.call('HGET', p .. 'deadrows', key))
    redis.call('HDEL', p .. 'deadrows', key)
    local contact = f[9]
    local q, s = p .. 'q:' .. contact, p .. 'sched:' .. contact
    f[4], f[9] = 0, nil
    local e = cmsgpack.pack(f)
    -- back into id order: before the first later row, else at the end
    local pivot = nil
    for _, other in ipairs(redis.call('LRANGE', q, 0, -1)) do
      if cmsgpack.unpack(other)[2] > f[2] then pivot = other; break end
    end
    if pivot then redis.call('LINSERT', q, 'BEFORE', pivot, e)
    else redis.call('RPUSH', q, e) end
    admitted(contact, f[3], ARGV[2], pivot ~= nil)
    local nxt = math.min(tonumber(redis.call('HGET', s, 'next') or ARGV[2]), now)
    redis.call('HSET', s, 'next', nxt)
    if redis.call('HEXISTS', s, 'owner') == 1 then
      nxt = math.max(nxt, tonumber(redis.call('HGET', s, 'expires')))
    end
    redis.call('ZADD', p .. 'due', nxt, contact)
    count = count + 1
  end
end
return count
"""

DEAD_LETTERS = LUA_HELPERS + ROWS + """
local out = {}
for _, key in ipairs(redis.call('ZRANGE', p .. 'dead', 0, tonumber(ARGV[2]) - 1)) do
  local e = redis.call('HGET', p .. 'deadrows', key)
  if e then
    local f = cmsgpack.unpack(e)
    out[#out + 1] = reply(f, f[9])
  end
end
return out
"""

PUT_HANDOFF = LUA_HELPERS + """
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

ADD_VALUE = LUA_HELPERS + """
local k = ARGV[2]
local held = redis.call('HMGET', k, 'v', 'exp')
if held[1] and (not held[2] or tonumber(held[2]) > tonumber(ARGV[4])) then return held[1] end
redis.call('DEL', k)
redis.call('HSET', k, 'v', ARGV[3])
return ARGV[3]
"""

DELETE_VALUE = LUA_HELPERS + """
local k = ARGV[2]
local expected = opt(ARGV[3])
if expected and redis.call('HGET', k, 'v') ~= expected then return 0 end
return redis.call('DEL', k)
"""

PRUNE = LUA_HELPERS + """
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



# A token bucket shared by every host (the pace towards one Chatwoot). Redis's own clock,
# so hosts whose clocks disagree still share one budget. Answers are strings: a Lua number
# would reach the client truncated to an integer.
# ARGV: prefix, bucket name, rate per minute, capacity, tokens wanted
TAKE_TOKENS = LUA_HELPERS + """
local k = p .. 'pace:' .. ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, cap, n = tonumber(ARGV[3]) / 60, tonumber(ARGV[4]), tonumber(ARGV[5])
local v = redis.call('HMGET', k, 'tokens', 'at')
local tokens, at = tonumber(v[1]) or cap, tonumber(v[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= n then tokens = tokens - n else wait = (n - tokens) / rate end
redis.call('HSET', k, 'tokens', string.format('%.6f', tokens), 'at', string.format('%.6f', now))
redis.call('PEXPIRE', k, 600000)
return string.format('%.6f', wait)
"""

# Values, each replacing what its key held (and its expiry); Redis forgets an expiring one a
# second after its expiry. ARGV: prefix, count, then 4 per value: key, value, expiry ('n':
# none), Redis's own expiry in ms
SET_VALUES = LUA_HELPERS + """
local n = tonumber(ARGV[2])
for i = 0, n - 1 do
  local b = 3 + i * 4
  local k = ARGV[b]
  redis.call('DEL', k)
  if ARGV[b + 2] == 'n' then
    redis.call('HSET', k, 'v', ARGV[b + 1])
  else
    redis.call('HSET', k, 'v', ARGV[b + 1], 'exp', ARGV[b + 2])
    redis.call('PEXPIREAT', k, tonumber(ARGV[b + 3]))
  end
end
return n
"""
