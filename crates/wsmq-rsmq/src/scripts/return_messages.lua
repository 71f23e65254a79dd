-- Gives back messages that one receive holds: each only while its receive count is still
-- the one that receive saw, so a consumer whose vt ran out (and whose message another
-- consumer received since) cannot make it visible again, or dead, under the other's feet.
--
-- KEYS[1]  {ns}:{qname}      zset of message ids scored by visible-at ms
-- KEYS[2]  {ns}:{qname}:Q    queue hash
-- KEYS[3]  {ns}:QUEUES       set of queue names (a dead-letter queue created here joins it)
-- ARGV[1]  "release": visible again after ARGV[2] seconds (validated by the caller);
--          "dead": to the queue's dead-letter queue now, or deleted when it has none
-- ARGV[2]  seconds, for "release"
-- ARGV[3]  "{ns}:", the prefix of the dead-letter queue's keys; on a Redis Cluster
--          "park:" and the queue's parking hash (see dead_letter_prelude.lua)
-- ARGV[4], ARGV[5], … pairs: message id, the rc its receive returned (validated by the caller)
--
-- Returns: {how many were given back, 1 if dead ones went to a dead-letter queue else 0}
-- Errors:  "RSMQ queueNotFound" vt, delay or maxsize missing from the hash
--          "RSMQ invalidDeadLetter name|self|type" as in receive_messages.lua
--          both before the first write

local q = queue_fields(KEYS[2], "deadletter")
if not q then
  return redis.error_reply("RSMQ queueNotFound")
end

local ts = now_ms()
local held, bodies = {}, {}
for i = 4, #ARGV - 1, 2 do
  local id = ARGV[i]
  -- The rc comparison is of strings: the field holds the decimal count HINCRBY or the
  -- receive script wrote.
  if redis.call("ZSCORE", KEYS[1], id) and redis.call("HGET", KEYS[2], id .. ":rc") == ARGV[i + 1] then
    held[#held + 1] = id
  end
end

if ARGV[1] == "release" then
  local visible_at = int(ts + tonumber(ARGV[2]) * 1000)
  for _, id in ipairs(held) do
    redis.call("ZADD", KEYS[1], visible_at, id)
  end
  return { #held, 0 }
end

local dl = false
if #held > 0 then
  local err
  dl, err = dead_letter_keys(ARGV[3], q[4], KEYS[1])
  if err then
    return err
  end
  for i, id in ipairs(held) do
    bodies[i] = redis.call("HGET", KEYS[2], id)
  end
end
dead_letter(KEYS[1], KEYS[2], KEYS[3], dl, held, bodies, ts)
return { #held, dl and 1 or 0 }
