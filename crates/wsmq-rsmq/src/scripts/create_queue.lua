-- Creates a queue exactly as rsmq 0.12 createQueue does, in one call.
--
-- KEYS[1]  {ns}:{qname}:Q    queue hash
-- KEYS[2]  {ns}:QUEUES       set of queue names
-- ARGV[1]  vt in seconds (validated by the caller)
-- ARGV[2]  delay in seconds (validated by the caller)
-- ARGV[3]  maxsize in characters, or -1 (validated by the caller)
-- ARGV[4]  qname, the member added to KEYS[2]
-- ARGV[5]  maxreceives, "0" for none (validated by the caller)
-- ARGV[6]  ttl in seconds, "0" for none (validated by the caller)
-- ARGV[7]  deadletter queue name, "" for none (validated by the caller)
--
-- Returns: 1
-- Errors:  "RSMQ queueExists" when the hash already has a vt field

-- rsmq stamps created and modified with the seconds part of Redis TIME.
local now = redis.call("TIME")[1]

-- Every HSETNX runs, as in rsmq's MULTI, so a hash that somehow lost some of its
-- fields is repaired the same way; only the vt field decides "exists".
local fresh = redis.call("HSETNX", KEYS[1], "vt", ARGV[1])
redis.call("HSETNX", KEYS[1], "delay", ARGV[2])
redis.call("HSETNX", KEYS[1], "maxsize", ARGV[3])
redis.call("HSETNX", KEYS[1], "created", now)
redis.call("HSETNX", KEYS[1], "modified", now)
if fresh == 0 then
  return redis.error_reply("RSMQ queueExists")
end

-- wsmq's own attributes are written only when set, so a queue without them has exactly
-- the fields npm rsmq writes.
if ARGV[5] ~= "0" then
  redis.call("HSET", KEYS[1], "maxreceives", ARGV[5])
end
if ARGV[6] ~= "0" then
  redis.call("HSET", KEYS[1], "ttl", ARGV[6])
end
if ARGV[7] ~= "" then
  redis.call("HSET", KEYS[1], "deadletter", ARGV[7])
end

redis.call("SADD", KEYS[2], ARGV[4])
return 1
