-- Receives up to n messages as n calls of rsmq 0.12 receiveMessage would, in one call,
-- and optionally says when the queue's next hidden message becomes visible.
--
-- KEYS[1]  {ns}:{qname}      zset of message ids scored by visible-at ms
-- KEYS[2]  {ns}:{qname}:Q    queue hash
-- ARGV[1]  vt in seconds, or "" for the queue's vt
-- ARGV[2]  n, the most messages to receive
-- ARGV[3]  optional: "1" to also return the next-visible time (see Returns)
--
-- Returns: without ARGV[3], a flat array, four entries per message in visibility order:
--          id, body (nil if the hash lost it), rc (receive count), fr (first receive, ms).
--          With ARGV[3] = "1", a pair: that flat array, then the ms from now (Redis TIME)
--          until the earliest message still hidden after this receive becomes visible
--          (the messages just received count: they are hidden for vt), or nil if none is.
-- Errors:  "RSMQ queueNotFound"  vt, delay or maxsize missing from the hash
--          "RSMQ invalidValue vt" resolved vt outside 0..9999999

local function int(n)
  return string.format("%.0f", n)
end

local q = redis.call("HMGET", KEYS[2], "vt", "delay", "maxsize")
if not q[1] or not q[2] or not q[3] then
  return redis.error_reply("RSMQ queueNotFound")
end

local vt = tonumber(ARGV[1] ~= "" and ARGV[1] or q[1])
if not vt or vt < 0 or vt > 9999999 then
  return redis.error_reply("RSMQ invalidValue vt")
end
vt = math.floor(vt)

local n = tonumber(ARGV[2])
local with_next = ARGV[3] == "1"
local t = redis.call("TIME")
local ts = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local ids = {}
if n >= 1 then
  ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", int(ts), "LIMIT", "0", int(n))
end

local out = {}
if #ids > 0 then
  local hidden_until = int(ts + vt * 1000)
  for i, id in ipairs(ids) do
    redis.call("ZADD", KEYS[1], hidden_until, id)
    local body = redis.call("HGET", KEYS[2], id)
    local rc = redis.call("HINCRBY", KEYS[2], id .. ":rc", 1)
    local fr
    if rc == 1 then
      redis.call("HSET", KEYS[2], id .. ":fr", int(ts))
      fr = ts
    else
      -- rsmq turns a missing fr into Number(null), which is 0.
      fr = tonumber(redis.call("HGET", KEYS[2], id .. ":fr")) or 0
    end
    out[4 * i - 3] = id
    out[4 * i - 2] = body
    out[4 * i - 1] = rc
    out[4 * i] = fr
  end
  redis.call("HINCRBY", KEYS[2], "totalrecv", #ids)
end

if not with_next then
  return out
end
-- The first score after now: delayed messages, and in-flight ones including those just
-- received (unless vt is 0, which leaves them visible). Lua's false is a nil reply.
local next_ms = false
local first = redis.call("ZRANGEBYSCORE", KEYS[1], "(" .. int(ts), "+inf", "WITHSCORES", "LIMIT", "0", "1")
if #first == 2 then
  next_ms = math.ceil(tonumber(first[2]) - ts)
end
return {out, next_ms}
