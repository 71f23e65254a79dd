-- Shared by the scripts that take messages out of a queue for good (receive, and a nack
-- with "dead"); scripts.rs puts it after queue_prelude.lua. Every check here runs before
-- the first write of its script, since Redis does not roll a script back when a later
-- command fails: a script either writes everything or nothing.
--
-- KEYS     none of its own: each function takes the keys it uses from its script
-- ARGV     none of its own
-- Returns: nothing; it defines local functions for the script after it

-- The dead-letter queue named by a queue hash's `deadletter` field, as its zset and hash
-- keys in namespace `prefix` ("{ns}:"); false when there is none. Errors (to return as
-- the script's reply) for a name rsmq would not accept, the queue itself, or keys that
-- hold something other than a queue.
--
-- On a Redis Cluster the dead-letter queue's keys are in another slot, out of this
-- script's reach, and `prefix` is "park:" followed by the queue's parking hash (in its own
-- slot): dead messages wait there, with the dead-letter queue's name, until the client
-- moves them over (wsmq-rsmq does it right after the script; see dead.rs).
local function dead_letter_keys(prefix, name, own_zset)
  if not name or name == "" then
    return false
  end
  if prefix == "" then
    return nil, redis.error_reply("RSMQ invalidDeadLetter cluster")
  end
  if string.sub(prefix, 1, 5) == "park:" then
    if #name > 160 or not string.find(name, "^[%w_-]+$") then
      return nil, redis.error_reply("RSMQ invalidDeadLetter name")
    end
    return { park = string.sub(prefix, 6), name = name }
  end
  if #name > 160 or not string.find(name, "^[%w_-]+$") then
    return nil, redis.error_reply("RSMQ invalidDeadLetter name")
  end
  local zset, hash = prefix .. name, prefix .. name .. ":Q"
  if zset == own_zset then
    return nil, redis.error_reply("RSMQ invalidDeadLetter self")
  end
  local zt, ht = redis.call("TYPE", zset).ok, redis.call("TYPE", hash).ok
  if (zt ~= "zset" and zt ~= "none") or (ht ~= "hash" and ht ~= "none") then
    return nil, redis.error_reply("RSMQ invalidDeadLetter type")
  end
  return { zset = zset, hash = hash, name = name }
end

-- Adds n to a counter of a hash, reading a missing or non-numeric one as 0 (as rsmq reads
-- counters) instead of failing as HINCRBY would on "abc".
local function add_count(hash, field, n)
  local current = tonumber(redis.call("HGET", hash, field)) or 0
  redis.call("HSET", hash, field, int(current + n))
end

-- Moves messages ids[i] with bodies[i] out of the queue (zset, hash): into the dead-letter
-- queue dl (keys from dead_letter_keys, created with rsmq's defaults if missing, and
-- added to the set `queues`), visible at once and counted as sent there, with their ids
-- and bodies but no receive count; or, when dl is false, nowhere. Counts them in the
-- queue's `totaldead`. 1000 messages write at most 2000 values per call, under the 8000
-- that unpack() can return.
local function dead_letter(zset, hash, queues, dl, ids, bodies, ts)
  local n = #ids
  if n == 0 then
    return
  end
  local CHUNK = 1000
  if dl and dl.park then
    redis.call("HSET", dl.park, "to", dl.name)
    for first = 1, n, CHUNK do
      local hargs, k = {}, 0
      for i = first, math.min(first + CHUNK - 1, n) do
        hargs[k + 1], hargs[k + 2] = ids[i], bodies[i] or ""
        k = k + 2
      end
      redis.call("HSET", dl.park, unpack(hargs))
    end
  elseif dl then
    if redis.call("HSETNX", dl.hash, "vt", "30") == 1 then
      local secs = int(math.floor(ts / 1000))
      redis.call("HSETNX", dl.hash, "delay", "0")
      redis.call("HSETNX", dl.hash, "maxsize", "65536")
      redis.call("HSETNX", dl.hash, "created", secs)
      redis.call("HSETNX", dl.hash, "modified", secs)
      redis.call("SADD", queues, dl.name)
    end
    local now = int(ts)
    for first = 1, n, CHUNK do
      local zargs, hargs, k = {}, {}, 0
      for i = first, math.min(first + CHUNK - 1, n) do
        zargs[k + 1], zargs[k + 2] = now, ids[i]
        -- A body the hash lost is moved as "", which is how it would be delivered.
        hargs[k + 1], hargs[k + 2] = ids[i], bodies[i] or ""
        k = k + 2
      end
      redis.call("ZADD", dl.zset, unpack(zargs))
      redis.call("HSET", dl.hash, unpack(hargs))
    end
    add_count(dl.hash, "totalsent", n)
  end
  for first = 1, n, CHUNK do
    local last = math.min(first + CHUNK - 1, n)
    local fields, k = {}, 0
    for i = first, last do
      local id = ids[i]
      fields[k + 1], fields[k + 2], fields[k + 3] = id, id .. ":rc", id .. ":fr"
      k = k + 3
    end
    redis.call("ZREM", zset, unpack(ids, first, last))
    redis.call("HDEL", hash, unpack(fields))
  end
  add_count(hash, "totaldead", n)
end
