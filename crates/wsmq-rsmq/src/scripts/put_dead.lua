-- Redis Cluster only: moves messages a queue parked for its dead-letter queue into that
-- queue, which lives in another slot (dead_letter_prelude.lua parks them). Idempotent: a
-- message already there (a move that was cut short and is done again) is not added twice.
--
-- KEYS[1]  {ns}:{d}:d        the dead-letter queue's zset
-- KEYS[2]  {ns}:{d}:d:Q      its hash
-- KEYS[3]  {ns}:{d}:QUEUES   its set of queue names
-- KEYS[4]  {ns}:{d}:rt:d     its realtime channel
-- ARGV[1]  "1" to publish the realtime notification, else "0"
-- ARGV[2]  the dead-letter queue's name
-- ARGV[3], ARGV[4], … pairs: message id, body
-- Returns: how many messages were added
-- Errors:  "RSMQ invalidDeadLetter type" when its keys hold something other than a queue

local zt, ht = redis.call("TYPE", KEYS[1]).ok, redis.call("TYPE", KEYS[2]).ok
if (zt ~= "zset" and zt ~= "none") or (ht ~= "hash" and ht ~= "none") then
  return redis.error_reply("RSMQ invalidDeadLetter type")
end
local t = redis.call("TIME")
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now = string.format("%d", ms)
if redis.call("HSETNX", KEYS[2], "vt", "30") == 1 then
  local secs = string.format("%d", math.floor(ms / 1000))
  redis.call("HSETNX", KEYS[2], "delay", "0")
  redis.call("HSETNX", KEYS[2], "maxsize", "65536")
  redis.call("HSETNX", KEYS[2], "created", secs)
  redis.call("HSETNX", KEYS[2], "modified", secs)
  redis.call("SADD", KEYS[3], ARGV[2])
end
local added = 0
for i = 3, #ARGV - 1, 2 do
  if redis.call("HSETNX", KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call("ZADD", KEYS[1], now, ARGV[i])
    added = added + 1
  end
end
if added > 0 then
  local sent = tonumber(redis.call("HGET", KEYS[2], "totalsent")) or 0
  redis.call("HSET", KEYS[2], "totalsent", string.format("%d", sent + added))
  if ARGV[1] == "1" then
    redis.call("PUBLISH", KEYS[4], redis.call("ZCARD", KEYS[1]))
  end
end
return added
