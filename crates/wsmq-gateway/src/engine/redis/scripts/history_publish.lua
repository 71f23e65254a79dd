-- history_publish.lua: publishes on a channel with history, atomically: takes the next offset,
-- appends the publication to the channel's stream (trimmed to its size, both keys expiring
-- ttl after this publication) and PUBLISHes it with its position.
--
-- KEYS[1]  wsmq:hist:{c}       STREAM, entry id "{offset}-0", fields m (body), t (sent, ms)
-- KEYS[2]  wsmq:hist:{c}:pos   HASH: epoch, offset (the latest)
-- ARGV[1]  the pub/sub channel (wsmq:chh:{c}; on a Redis Cluster the sharded one, in this slot)
-- ARGV[2]  the body
-- ARGV[3]  size: publications kept (>= 1)
-- ARGV[4]  ttl, seconds (>= 1)
-- ARGV[5]  a fresh epoch, used when the history is new or was lost
-- ARGV[6]  "PUBLISH", or "SPUBLISH" on a Redis Cluster
-- Returns  {receivers, offset, epoch}
-- Errors   none of its own
--
-- A history whose position survived while its stream did not (the stream deleted or evicted
-- alone) is lost: it starts again in a new epoch, so no reader mistakes the gap for nothing.

local epoch = redis.call('HGET', KEYS[2], 'epoch')
local top = tonumber(redis.call('HGET', KEYS[2], 'offset') or '0')
if (not epoch) or (top > 0 and redis.call('EXISTS', KEYS[1]) == 0) then
  epoch = ARGV[5]
  top = 0
  redis.call('DEL', KEYS[1])
end
local offset = top + 1
local now = redis.call('TIME')
local sent = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local offset_s = string.format('%d', offset)
local sent_s = string.format('%d', sent)
redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', offset_s)
redis.call('XADD', KEYS[1], 'MAXLEN', '=', ARGV[3], offset_s .. '-0', 'm', ARGV[2], 't', sent_s)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
local verb = ARGV[6] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH'
local receivers = redis.call(verb, ARGV[1], offset_s .. ' ' .. epoch .. ' ' .. sent_s .. ' ' .. ARGV[2])
return {receivers, offset_s, epoch}
