-- Reads a queue's attributes as rsmq 0.12 getQueueAttributes does, in one call.
--
-- KEYS[1]  {ns}:{qname}      zset of message ids scored by visible-at ms
-- KEYS[2]  {ns}:{qname}:Q    queue hash
-- ARGV     none: the time comes from Redis TIME
--
-- Returns: {vt, delay, maxsize, totalrecv, totalsent, created, modified, msgs, hiddenmsgs,
--          maxreceives, ttl, deadletter, totaldead}
--          the raw hash values (nil when a field is missing) but for msgs, which is ZCARD,
--          and hiddenmsgs, which counts scores at or after the current second
-- Errors:  "RSMQ queueNotFound" when the hash has no vt field

local now = redis.call("TIME")[1]
local a = redis.call("HMGET", KEYS[2], "vt", "delay", "maxsize", "totalrecv", "totalsent", "created", "modified",
  "maxreceives", "ttl", "deadletter", "totaldead")
if not a[1] then
  return redis.error_reply("RSMQ queueNotFound")
end

-- rsmq counts hidden messages from the start of the current second ("<secs>000"),
-- not from the current millisecond; keep that so both report the same number.
return {
  a[1], a[2], a[3], a[4], a[5], a[6], a[7],
  redis.call("ZCARD", KEYS[1]),
  redis.call("ZCOUNT", KEYS[1], now .. "000", "+inf"),
  a[8], a[9], a[10], a[11],
}
