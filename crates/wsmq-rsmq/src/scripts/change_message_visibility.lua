-- Sets when a message becomes visible again, as rsmq 0.12 changeMessageVisibility does.
--
-- KEYS[1]  {ns}:{qname}      zset of message ids scored by visible-at ms
-- KEYS[2]  {ns}:{qname}:Q    queue hash
-- ARGV[1]  message id (validated by the caller)
-- ARGV[2]  vt in seconds from now (validated by the caller)
--
-- Returns: 1 if the message exists, else 0
-- Errors:  "RSMQ queueNotFound" vt, delay or maxsize missing from the hash

local q = redis.call("HMGET", KEYS[2], "vt", "delay", "maxsize")
if not q[1] or not q[2] or not q[3] then
  return redis.error_reply("RSMQ queueNotFound")
end

if not redis.call("ZSCORE", KEYS[1], ARGV[1]) then
  return 0
end

local t = redis.call("TIME")
local ts = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("ZADD", KEYS[1], string.format("%.0f", ts + tonumber(ARGV[2]) * 1000), ARGV[1])
return 1
