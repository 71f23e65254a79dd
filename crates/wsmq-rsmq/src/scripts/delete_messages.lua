-- Deletes messages as that many calls of rsmq 0.12 deleteMessage would, in one call.
--
-- KEYS[1]  {ns}:{qname}      zset of message ids scored by visible-at ms
-- KEYS[2]  {ns}:{qname}:Q    queue hash
-- ARGV     message ids (validated by the caller)
--
-- Returns: how many ids rsmq would have answered 1 for: those removed from the zset
--          that also had at least one hash field
-- Errors:  none; like rsmq, a missing queue just deletes nothing

local deleted = 0
for _, id in ipairs(ARGV) do
  local z = redis.call("ZREM", KEYS[1], id)
  local h = redis.call("HDEL", KEYS[2], id, id .. ":rc", id .. ":fr")
  if z == 1 and h > 0 then
    deleted = deleted + 1
  end
end
return deleted
