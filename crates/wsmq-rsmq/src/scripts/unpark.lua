-- Redis Cluster only: forgets parked messages once put_dead.lua moved them into the
-- dead-letter queue, and the parking hash with them when nothing else waits there.
--
-- KEYS[1]  {ns}:{q}:q:D      the queue's parking hash (field "to": the dead-letter queue)
-- ARGV     the ids moved
-- Returns: how many ids were still parked

local removed = 0
for first = 1, #ARGV, 1000 do
  removed = removed + redis.call("HDEL", KEYS[1], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
if redis.call("HLEN", KEYS[1]) <= 1 then
  redis.call("DEL", KEYS[1])
end
return removed
