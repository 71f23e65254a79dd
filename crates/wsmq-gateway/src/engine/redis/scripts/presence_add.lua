-- presence_add.lua: adds memberships of one channel, or refreshes those that exist, and counts
-- the users who joined by it.
--
-- KEYS[1]  wsmq:presence:{c}        ZSET member "{session} {user}", score its expiry (Unix ms)
-- KEYS[2]  wsmq:presence:{c}:users  HASH user -> live memberships in KEYS[1]
-- ARGV[1]  how long the memberships live from now, ms
-- ARGV[2]  ttl of both keys, seconds (longer than ARGV[1]: keys of a channel whose nodes all
--          died go away on their own)
-- ARGV[3…] members, "{session} {user}" (the session holds no space)
-- Returns  the users whose count went from 0 to 1
-- Errors   none of its own
--
-- The expiry comes from Redis TIME, so nodes with skewed clocks agree on it.

local now = redis.call('TIME')
local expires = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
local expires_s = string.format('%d', expires)
local joined = {}
for i = 3, #ARGV do
  local member = ARGV[i]
  local space = string.find(member, ' ', 1, true)
  if space and redis.call('ZADD', KEYS[1], expires_s, member) == 1 then
    local user = string.sub(member, space + 1)
    if redis.call('HINCRBY', KEYS[2], user, 1) == 1 then
      joined[#joined + 1] = user
    end
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return joined
