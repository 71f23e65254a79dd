-- history_read.lua: reads part of a channel's history with its epoch and latest offset.
--
-- KEYS[1]  wsmq:hist:{c}       STREAM (see history_publish.lua)
-- KEYS[2]  wsmq:hist:{c}:pos   HASH: epoch, offset
-- ARGV[1]  "after" (oldest entries after ARGV[2]) or "before" (latest entries before ARGV[2])
-- ARGV[2]  the bound, a decimal u64, exclusive; "" with "before": up to the latest
-- ARGV[3]  most entries returned (>= 1)
-- ARGV[4]  a fresh epoch, used when the history does not exist or was lost
-- ARGV[5]  ttl, seconds, of a position created here
-- Returns  {epoch, top, entries}; entries as XRANGE returns them, oldest first for "after",
--          latest first for "before"
-- Errors   none of its own
--
-- A missing history is created empty (position only): a subscriber that reads offset 0 in
-- epoch E now must find E still there when it recovers after the first publications.

local epoch = redis.call('HGET', KEYS[2], 'epoch')
local top = tonumber(redis.call('HGET', KEYS[2], 'offset') or '0')
if (not epoch) or (top > 0 and redis.call('EXISTS', KEYS[1]) == 0) then
  epoch = ARGV[4]
  top = 0
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', '0')
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
local entries = {}
if ARGV[1] == 'after' then
  -- Compared as numbers only to skip the read: a bound past the top has nothing after it
  -- (and a bound of 2^64-1 is no valid start for XRANGE).
  if tonumber(ARGV[2]) < top then
    entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2] .. '-0', '+', 'COUNT', ARGV[3])
  end
elseif ARGV[2] == '' then
  entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[3])
elseif tonumber(ARGV[2]) > 1 then
  entries = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[2] .. '-0', '-', 'COUNT', ARGV[3])
end
return {epoch, string.format('%d', top), entries}
