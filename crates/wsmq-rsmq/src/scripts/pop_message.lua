-- Receives and deletes the next visible message as rsmq 0.12 popMessage does.
--
-- KEYS[1]  {ns}:{qname}      zset of message ids scored by visible-at ms
-- KEYS[2]  {ns}:{qname}:Q    queue hash
-- ARGV     none: the time comes from Redis TIME
--
-- Returns: {} when no message is visible, else {id, body (nil if the hash lost it),
--          rc (receive count including this one), fr (first receive, ms)}
-- Errors:  "RSMQ queueNotFound" vt, delay or maxsize missing from the hash

local q = queue_fields(KEYS[2])
if not q then
  return redis.error_reply("RSMQ queueNotFound")
end

local ts = now_ms()
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", string.format("%.0f", ts), "LIMIT", "0", "1")
if #ids == 0 then
  return {}
end

local id = ids[1]
redis.call("HINCRBY", KEYS[2], "totalrecv", 1)
local body = redis.call("HGET", KEYS[2], id)
local rc = redis.call("HINCRBY", KEYS[2], id .. ":rc", 1)
local fr = ts
if rc ~= 1 then
  fr = tonumber(redis.call("HGET", KEYS[2], id .. ":fr")) or 0
end
redis.call("ZREM", KEYS[1], id)
redis.call("HDEL", KEYS[2], id, id .. ":rc", id .. ":fr")
return {id, body, rc, fr}
