-- Sets when messages become visible again, as that many calls of rsmq 0.12
-- changeMessageVisibility would at one instant, in one call.
--
-- KEYS[1]  {ns}:{qname}      zset of message ids scored by visible-at ms
-- KEYS[2]  {ns}:{qname}:Q    queue hash
-- ARGV[1]  vt in seconds from now (validated by the caller)
-- ARGV[2…] message ids (validated by the caller)
--
-- Returns: how many of the ids the queue holds (each of those is changed; rsmq answers 1
--          for exactly these)
-- Errors:  "RSMQ queueNotFound" vt, delay or maxsize missing from the hash

local q = queue_fields(KEYS[2])
if not q then
  return redis.error_reply("RSMQ queueNotFound")
end

local ts = now_ms()
local visible_at = string.format("%.0f", ts + tonumber(ARGV[1]) * 1000)
local changed = 0
for i = 2, #ARGV do
  if redis.call("ZSCORE", KEYS[1], ARGV[i]) then
    redis.call("ZADD", KEYS[1], visible_at, ARGV[i])
    changed = changed + 1
  end
end
return changed
