-- Updates a queue's attributes as rsmq 0.12 setQueueAttributes does, then reads them
-- back as getQueueAttributes does, all in one call.
--
-- KEYS[1]  {ns}:{qname}      zset of message ids scored by visible-at ms
-- KEYS[2]  {ns}:{qname}:Q    queue hash
-- ARGV[1]  new vt in seconds, or "" to keep it (validated by the caller)
-- ARGV[2]  new delay in seconds, or "" to keep it (validated by the caller)
-- ARGV[3]  new maxsize, or "" to keep it (validated by the caller)
--
-- Returns: the same array as get_queue_attributes.lua
-- Errors:  "RSMQ queueNotFound" when vt, delay or maxsize is missing from the hash

local q = redis.call("HMGET", KEYS[2], "vt", "delay", "maxsize")
if not q[1] or not q[2] or not q[3] then
  return redis.error_reply("RSMQ queueNotFound")
end

local now = redis.call("TIME")[1]
redis.call("HSET", KEYS[2], "modified", now)
local fields = {"vt", "delay", "maxsize"}
for i, field in ipairs(fields) do
  if ARGV[i] ~= "" then
    redis.call("HSET", KEYS[2], field, ARGV[i])
  end
end

local a = redis.call("HMGET", KEYS[2], "vt", "delay", "maxsize", "totalrecv", "totalsent", "created", "modified")
a[8] = redis.call("ZCARD", KEYS[1])
a[9] = redis.call("ZCOUNT", KEYS[1], now .. "000", "+inf")
return a
