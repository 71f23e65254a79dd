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
--          HINCRBY's own error for an rc field that is not an integer, as in rsmq

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
  local now = int(ts)

  -- Receives message i the way rsmq does, one command at a time.
  local function receive_one(i, id)
    redis.call("ZADD", KEYS[1], hidden_until, id)
    local body = redis.call("HGET", KEYS[2], id)
    local rc = redis.call("HINCRBY", KEYS[2], id .. ":rc", 1)
    local fr
    if rc == 1 then
      redis.call("HSET", KEYS[2], id .. ":fr", now)
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

  -- Four calls per message cost more than the work they do. Instead, per chunk of
  -- messages: one HMGET of every body and rc, one of fr for those received before, and
  -- one ZADD and one HSET for all their writes, held back until then.
  --
  -- Only what this can do exactly as HINCRBY does takes that path: a missing rc
  -- (HINCRBY counts from 0) or a plain positive integer short enough to stay exact in a
  -- double. Any other rc goes through receive_one, so that HINCRBY itself answers or
  -- fails (not an integer, overflow). So does an id with a ':' third from last: "x:rc"
  -- is x's rc, and only such ids can name another message's fields, which must then be
  -- read after the writes before them. receive_one runs after the held-back writes, so
  -- even a failing batch leaves the partial effects of calls made one at a time.
  --
  -- 1000 messages write at most 4000 values, well under the 8000 that Lua's unpack()
  -- can return (LUAI_MAXCSTACK).
  local CHUNK = 1000
  local COLON = string.byte(":")
  local zargs, hargs = {}, {}
  local function flush()
    if #zargs > 0 then
      redis.call("ZADD", KEYS[1], unpack(zargs))
      redis.call("HSET", KEYS[2], unpack(hargs))
      zargs, hargs = {}, {}
    end
  end

  for first = 1, #ids, CHUNK do
    local last = math.min(first + CHUNK - 1, #ids)
    local fields = {}
    for i = first, last do
      local k = 2 * (i - first)
      fields[k + 1], fields[k + 2] = ids[i], ids[i] .. ":rc"
    end
    local values = redis.call("HMGET", KEYS[2], unpack(fields))

    -- Which messages take the fast path, and the fr fields that it reads.
    local fast, fr_fields = {}, {}
    for i = first, last do
      local rc = values[2 * (i - first) + 2]
      if
        (not rc or (#rc <= 15 and string.find(rc, "^[1-9]%d*$")))
        and string.byte(ids[i], -3) ~= COLON
      then
        fast[i] = true
        if rc then
          fr_fields[#fr_fields + 1] = ids[i] .. ":fr"
        end
      end
    end
    local frs = #fr_fields > 0 and redis.call("HMGET", KEYS[2], unpack(fr_fields)) or {}

    local next_fr = 1
    for i = first, last do
      local id = ids[i]
      if fast[i] then
        local k = 2 * (i - first)
        local rc, fr = values[k + 2], ts
        if rc then
          rc = tonumber(rc) + 1
          hargs[#hargs + 1] = fields[k + 2]
          hargs[#hargs + 1] = int(rc)
          -- rsmq turns a missing fr into Number(null), which is 0.
          fr = tonumber(frs[next_fr]) or 0
          next_fr = next_fr + 1
        else
          rc = 1
          hargs[#hargs + 1] = fields[k + 2]
          hargs[#hargs + 1] = "1"
          hargs[#hargs + 1] = id .. ":fr"
          hargs[#hargs + 1] = now
        end
        zargs[#zargs + 1] = hidden_until
        zargs[#zargs + 1] = id
        out[4 * i - 3] = id
        out[4 * i - 2] = values[k + 1]
        out[4 * i - 1] = rc
        out[4 * i] = fr
      else
        flush()
        receive_one(i, id)
      end
    end
    flush()
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
