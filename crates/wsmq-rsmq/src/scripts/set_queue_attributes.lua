-- Updates a queue's attributes as rsmq 0.12 setQueueAttributes does, then reads them
-- back as getQueueAttributes does, all in one call.
--
-- KEYS[1]  {ns}:{qname}      zset of message ids scored by visible-at ms
-- KEYS[2]  {ns}:{qname}:Q    queue hash
-- ARGV[1]  new vt in seconds, or "" to keep it (validated by the caller)
-- ARGV[2]  new delay in seconds, or "" to keep it (validated by the caller)
-- ARGV[3]  new maxsize, or "" to keep it (validated by the caller)
-- ARGV[4]  new maxreceives, or "" to keep it (validated by the caller; "0" is none)
-- ARGV[5]  new ttl in seconds, or "" to keep it (validated by the caller; "0" is none)
-- ARGV[6]  "=" followed by the new deadletter queue name, "=" alone for none, or "" to
--          keep it (validated by the caller)
--
-- Returns: the same array as get_queue_attributes.lua
-- Errors:  "RSMQ queueNotFound" when vt, delay or maxsize is missing from the hash

local q = queue_fields(KEYS[2])
if not q then
  return redis.error_reply("RSMQ queueNotFound")
end

local now = redis.call("TIME")[1]
redis.call("HSET", KEYS[2], "modified", now)
local fields = {"vt", "delay", "maxsize", "maxreceives", "ttl"}
for i, field in ipairs(fields) do
  if ARGV[i] ~= "" then
    redis.call("HSET", KEYS[2], field, ARGV[i])
  end
end
-- wsmq's own attributes are removed when turned off, so such a queue again has exactly
-- the fields npm rsmq writes.
for _, field in ipairs({"maxreceives", "ttl"}) do
  if redis.call("HGET", KEYS[2], field) == "0" then
    redis.call("HDEL", KEYS[2], field)
  end
end
if ARGV[6] == "=" then
  redis.call("HDEL", KEYS[2], "deadletter")
elseif ARGV[6] ~= "" then
  redis.call("HSET", KEYS[2], "deadletter", string.sub(ARGV[6], 2))
end

local a = redis.call("HMGET", KEYS[2], "vt", "delay", "maxsize", "totalrecv", "totalsent", "created", "modified",
  "maxreceives", "ttl", "deadletter", "totaldead")
return {
  a[1], a[2], a[3], a[4], a[5], a[6], a[7],
  redis.call("ZCARD", KEYS[1]),
  redis.call("ZCOUNT", KEYS[1], now .. "000", "+inf"),
  a[8], a[9], a[10], a[11],
}
