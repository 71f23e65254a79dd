-- presence_remove.lua: removes memberships of one channel (given, or expired) and counts the
-- users who left by it.
--
-- KEYS[1]  wsmq:presence:{c}        ZSET member "{session} {user}", score its expiry (Unix ms)
-- KEYS[2]  wsmq:presence:{c}:users  HASH user -> live memberships in KEYS[1]
-- ARGV[1]  "members": remove ARGV[2…]; "expired": remove at most ARGV[2] memberships whose
--          expiry is past (by Redis TIME), oldest first
-- ARGV[2…] as ARGV[1] says
-- Returns  the users whose count went to 0
-- Errors   none of its own

local members
if ARGV[1] == 'expired' then
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', ms),
    'LIMIT', 0, tonumber(ARGV[2]))
else
  members = {}
  for i = 2, #ARGV do
    members[#members + 1] = ARGV[i]
  end
end
local left = {}
for _, member in ipairs(members) do
  local space = string.find(member, ' ', 1, true)
  if redis.call('ZREM', KEYS[1], member) == 1 and space then
    local user = string.sub(member, space + 1)
    if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
      redis.call('HDEL', KEYS[2], user)
      left[#left + 1] = user
    end
  end
end
return left
