-- Receives up to n messages as n calls of rsmq 0.12 receiveMessage would, in one call;
-- applies the queue's wsmq rules (maxreceives, ttl) on the way, and optionally says when
-- the queue's next hidden message becomes visible.
--
-- KEYS[1]  {ns}:{qname}      zset of message ids scored by visible-at ms
-- KEYS[2]  {ns}:{qname}:Q    queue hash
-- KEYS[3]  {ns}:QUEUES       set of queue names (a dead-letter queue created here joins it)
-- ARGV[1]  vt in seconds, or "" for the queue's vt
-- ARGV[2]  n, the most messages to receive
-- ARGV[3]  "1" to also return the next-visible time and the counts (see Returns), else "0"
-- ARGV[4]  "{ns}:", the prefix of the dead-letter queue's keys; on a Redis Cluster
--          "park:" and the queue's parking hash (see dead_letter_prelude.lua)
--
-- Returns: with ARGV[3] = "0", a flat array, four entries per message in visibility order:
--          id, body (nil if the hash lost it), rc (receive count), fr (first receive, ms).
--          With ARGV[3] = "1", a triple: that flat array; the ms from now (Redis TIME)
--          until the earliest message still hidden after this receive becomes visible
--          (the messages just received count: they are hidden for vt), or nil if none is;
--          and {over maxreceives, past ttl, 1 if those went to a dead-letter queue else 0,
--          skipped as corrupt}.
-- Errors:  "RSMQ queueNotFound"  vt, delay or maxsize missing from the hash
--          "RSMQ invalidValue vt" resolved vt outside 0..9999999
--          "RSMQ invalidDeadLetter name|self|type" a message is dead and the queue's
--          deadletter field names no usable queue
--          All of them, and Redis's own WRONGTYPE for the queue's keys, come before the
--          first write: a receive that fails has changed nothing.
--
-- The rules. A visible message that was already received maxreceives times (when
-- maxreceives > 0), or sent more than ttl seconds ago by its id (when ttl > 0), is not
-- handed out: it is dead, and moves with its id and body to the queue named by
-- deadletter, or is deleted when there is none (dead_letter in dead_letter_prelude.lua).
-- A message whose rc field is not a count (another writer's "abc") is corrupt: it is
-- left as it is, untouched and not handed out. The batch goes on past both, so it still
-- holds n messages when the queue has them. npm rsmq ignores these fields.

local q = queue_fields(KEYS[2], "maxreceives", "ttl", "deadletter", "totalrecv")
if not q then
  return redis.error_reply("RSMQ queueNotFound")
end

local vt = tonumber(ARGV[1] ~= "" and ARGV[1] or q[1])
if not vt or vt < 0 or vt > 9999999 then
  return redis.error_reply("RSMQ invalidValue vt")
end
vt = math.floor(vt)

local n = tonumber(ARGV[2])
local with_next = ARGV[3] == "1"
local ts = now_ms()
local now = int(ts)
local hidden_until = int(ts + vt * 1000)
-- Anything but a positive number turns a rule off.
local max_receives = tonumber(q[4]) or 0
local ttl_ms = (tonumber(q[5]) or 0) * 1000
-- Ids sort by send time (the base-36 µs in front, fixed width), so an id below `cutoff`,
-- the id prefix of the instant ttl ago, is one of a message sent before it. That one
-- string comparison is all a message that is not dead costs; expired() then confirms from
-- the id's digits, for ids some other writer made differently.
local cutoff = ttl_ms > 0 and base36(math.floor(ts - ttl_ms) * 1000)
local function expired(id)
  local sent = tonumber(string.sub(id, 1, 10), 36)
  return sent ~= nil and ts - sent / 1000 > ttl_ms
end
local COLON = string.byte(":")
local CHUNK = 1000

-- An rc field HINCRBY could count up: missing, or digits. Up to 15 digits are exact in a
-- double; up to 18 cannot overflow HINCRBY's 64 bits.
local function valid_rc(rc)
  return not rc or (#rc <= 18 and string.find(rc, "^%d+$") ~= nil)
end

-- Phase 1 reads and decides; it writes nothing, so a failure on the way (a key of the
-- wrong type) leaves the queue as it was. Candidates come in visibility order; the ones
-- set aside stay in the zset, so the next round starts after all those already seen.
local picked, picked_body, picked_rc = {}, {}, {}
local dead_ids, dead_bodies = {}, {}
local over, too_old, corrupt = 0, 0, 0
local seen = 0
while n >= 1 and #picked < n do
  local want = n - #picked
  local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now, "LIMIT", int(seen), int(want))
  seen = seen + #ids
  for first = 1, #ids, CHUNK do
    local last = math.min(first + CHUNK - 1, #ids)
    local fields = {}
    for i = first, last do
      local k = 2 * (i - first)
      fields[k + 1], fields[k + 2] = ids[i], ids[i] .. ":rc"
    end
    local values = redis.call("HMGET", KEYS[2], unpack(fields))
    for i = first, last do
      local id = ids[i]
      local k = 2 * (i - first)
      local body, rc = values[k + 1], values[k + 2]
      if not valid_rc(rc) then
        corrupt = corrupt + 1
      else
        local dead = false
        if max_receives > 0 and rc and tonumber(rc) >= max_receives then
          over, dead = over + 1, true
        elseif cutoff and id < cutoff and expired(id) then
          too_old, dead = too_old + 1, true
        end
        if dead then
          local d = #dead_ids + 1
          dead_ids[d], dead_bodies[d] = id, body
        else
          local p = #picked + 1
          picked[p], picked_body[p], picked_rc[p] = id, body, rc
        end
      end
    end
  end
  if #ids < want then
    break
  end
end

local dl = false
if #dead_ids > 0 then
  local err
  dl, err = dead_letter_keys(ARGV[4], q[6], KEYS[1])
  if err then
    return err
  end
end

-- Phase 2 writes; nothing below can fail.
dead_letter(KEYS[1], KEYS[2], KEYS[3], dl, dead_ids, dead_bodies, ts)

local out = {}
local delivered = 0
local function emit(id, body, rc, fr)
  out[4 * delivered + 1], out[4 * delivered + 2] = id, body
  out[4 * delivered + 3], out[4 * delivered + 4] = rc, fr
  delivered = delivered + 1
end

-- Receives one message the way rsmq does, one command at a time, reading its fields only
-- now: for ids that may name fields of messages received before them in this batch.
local function receive_one(id)
  local body = redis.call("HGET", KEYS[2], id)
  local rc = redis.call("HGET", KEYS[2], id .. ":rc")
  if not valid_rc(rc) then
    corrupt = corrupt + 1
    return
  end
  redis.call("ZADD", KEYS[1], hidden_until, id)
  if rc and #rc > 15 then
    -- Exact in Redis, where a double would round.
    rc = redis.call("HINCRBY", KEYS[2], id .. ":rc", 1)
  else
    rc = (tonumber(rc) or 0) + 1
    redis.call("HSET", KEYS[2], id .. ":rc", int(rc))
  end
  local fr
  if rc == 1 then
    redis.call("HSET", KEYS[2], id .. ":fr", now)
    fr = ts
  else
    -- rsmq turns a missing fr into Number(null), which is 0.
    fr = tonumber(redis.call("HGET", KEYS[2], id .. ":fr")) or 0
  end
  emit(id, body, rc, fr)
end

-- Four calls per message cost more than the work they do. Instead, per chunk: one HMGET
-- of fr for those received before, and one ZADD and one HSET for all the writes, held
-- back until then. Only a count short enough to stay exact in a double takes that path,
-- and only an id without a ':' third from last: "x:rc" is x's rc, and only such ids can
-- name another message's fields, which must then be read after the writes before them.
-- 1000 messages write at most 4000 values, under the 8000 unpack() can return.
local zargs, hargs = {}, {}
local function flush()
  if #zargs > 0 then
    redis.call("ZADD", KEYS[1], unpack(zargs))
    redis.call("HSET", KEYS[2], unpack(hargs))
    zargs, hargs = {}, {}
  end
end

for first = 1, #picked, CHUNK do
  local last = math.min(first + CHUNK - 1, #picked)
  local fast, fr_fields = {}, {}
  for i = first, last do
    local rc = picked_rc[i]
    if (not rc or #rc <= 15) and string.byte(picked[i], -3) ~= COLON then
      fast[i] = true
      if rc and tonumber(rc) > 0 then
        fr_fields[#fr_fields + 1] = picked[i] .. ":fr"
      end
    end
  end
  local frs = #fr_fields > 0 and redis.call("HMGET", KEYS[2], unpack(fr_fields)) or {}

  local next_fr = 1
  for i = first, last do
    local id = picked[i]
    if fast[i] then
      local rc = (tonumber(picked_rc[i]) or 0) + 1
      local fr = ts
      hargs[#hargs + 1] = id .. ":rc"
      hargs[#hargs + 1] = int(rc)
      if rc == 1 then
        hargs[#hargs + 1] = id .. ":fr"
        hargs[#hargs + 1] = now
      else
        -- rsmq turns a missing fr into Number(null), which is 0.
        fr = tonumber(frs[next_fr]) or 0
        next_fr = next_fr + 1
      end
      zargs[#zargs + 1] = hidden_until
      zargs[#zargs + 1] = id
      emit(id, picked_body[i], rc, fr)
    else
      flush()
      receive_one(id)
    end
  end
  flush()
end

if delivered > 0 then
  local total = q[7]
  if valid_rc(total) then
    redis.call("HINCRBY", KEYS[2], "totalrecv", delivered)
  else
    -- rsmq's parseInt(x) || 0 reading of a counter another writer broke.
    redis.call("HSET", KEYS[2], "totalrecv", int((tonumber(total) or 0) + delivered))
  end
end

if not with_next then
  return out
end
-- The first score after now: delayed messages, and in-flight ones including those just
-- received (unless vt is 0, which leaves them visible). Lua's false is a nil reply.
local next_ms = false
local first = redis.call("ZRANGEBYSCORE", KEYS[1], "(" .. now, "+inf", "WITHSCORES", "LIMIT", "0", "1")
if #first == 2 then
  next_ms = math.ceil(tonumber(first[2]) - ts)
end
-- On a cluster, messages parked for the dead-letter queue (now, or by a receive whose
-- client died before it moved them) say so too, so that the client moves them.
local moved = dl and 1 or 0
if string.sub(ARGV[4], 1, 5) == "park:" and redis.call("EXISTS", string.sub(ARGV[4], 6)) == 1 then
  moved = 1
end
return { out, next_ms, { over, too_old, moved, corrupt } }
