-- Moves up to n visible messages from one queue to another with their ids and bodies
-- (redrive: back from a dead-letter queue), in one call. In the target they are visible
-- at once, received never (no rc, no fr), and counted as sent.
--
-- KEYS[1]  {ns}:{from}       zset of the source
-- KEYS[2]  {ns}:{from}:Q     hash of the source
-- KEYS[3]  {ns}:{to}         zset of the target
-- KEYS[4]  {ns}:{to}:Q       hash of the target
-- KEYS[5]  {ns}:rt:{to}      realtime channel of the target
-- ARGV[1]  n, the most messages to move (at most 1000, checked by the caller)
-- ARGV[2]  "1" to PUBLISH the target's ZCARD on KEYS[5] after a move, else "0"
--
-- Returns: {moved, messages left in the source}
-- Errors:  "RSMQ queueNotFound from" / "RSMQ queueNotFound to", or WRONGTYPE for a key
--          of the wrong type, all before the first write
--
-- A message being received from the source (hidden) stays there: taking it would hand it
-- to a second consumer while the first still works on it.

if not queue_fields(KEYS[2]) then
  return redis.error_reply("RSMQ queueNotFound from")
end
if not queue_fields(KEYS[4]) then
  return redis.error_reply("RSMQ queueNotFound to")
end
local target = redis.call("TYPE", KEYS[3]).ok
if target ~= "zset" and target ~= "none" then
  return redis.error_reply("WRONGTYPE the target's zset holds a " .. target)
end

local ts = now_ms()
local now = int(ts)
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now, "LIMIT", "0", ARGV[1])
if #ids > 0 then
  local bodies = redis.call("HMGET", KEYS[2], unpack(ids))
  local zargs, hargs, fields = {}, {}, {}
  for i, id in ipairs(ids) do
    zargs[2 * i - 1], zargs[2 * i] = now, id
    hargs[2 * i - 1], hargs[2 * i] = id, bodies[i] or ""
    fields[3 * i - 2], fields[3 * i - 1], fields[3 * i] = id, id .. ":rc", id .. ":fr"
  end
  -- The target may hold an older copy's rc and fr (a message redriven before, received
  -- there, then dead again): it starts over.
  local stale = {}
  for i, id in ipairs(ids) do
    stale[2 * i - 1], stale[2 * i] = id .. ":rc", id .. ":fr"
  end
  redis.call("HDEL", KEYS[4], unpack(stale))
  redis.call("ZADD", KEYS[3], unpack(zargs))
  redis.call("HSET", KEYS[4], unpack(hargs))
  redis.call("ZREM", KEYS[1], unpack(ids))
  redis.call("HDEL", KEYS[2], unpack(fields))
  add_count(KEYS[4], "totalsent", #ids)
  if ARGV[2] == "1" then
    redis.call("PUBLISH", KEYS[5], int(redis.call("ZCARD", KEYS[3])))
  end
end
return { #ids, redis.call("ZCARD", KEYS[1]) }
