-- Sends messages as rsmq 0.12 sendMessage does, any number of them in one call.
--
-- KEYS[1]  {ns}:{qname}      zset of message ids scored by visible-at ms
-- KEYS[2]  {ns}:{qname}:Q    queue hash
-- KEYS[3]  {ns}:rt:{qname}   realtime channel
-- ARGV[1]  delay in seconds, or "" for the queue's delay
-- ARGV[2]  "1" to PUBLISH the queue's ZCARD on KEYS[3] after the send, else "0"
-- ARGV[3i], ARGV[3i+1], ARGV[3i+2] for message i = 1..n:
--          22 random [A-Za-z0-9] id characters, the body's length in UTF-16 code
--          units (JavaScript's string.length, which rsmq compares with maxsize), the body
--
-- Returns: the new ids, in argument order
-- Errors:  "RSMQ queueNotFound"     vt, delay or maxsize missing from the hash
--          "RSMQ invalidValue delay" resolved delay outside 0..9999999
--          "RSMQ messageTooLong"    some body longer than maxsize; nothing is sent

local q = queue_fields(KEYS[2])
if not q then
  return redis.error_reply("RSMQ queueNotFound")
end

-- rsmq validates the delay after falling back to the queue's, so a bad stored delay
-- fails the same way a bad argument does.
local delay = tonumber(ARGV[1] ~= "" and ARGV[1] or q[2])
if not delay or delay < 0 or delay > 9999999 then
  return redis.error_reply("RSMQ invalidValue delay")
end
delay = math.floor(delay)

-- Check every body before writing any, so a batch is all or nothing. An unparsable
-- maxsize disables the check, as NaN does in rsmq.
local maxsize = tonumber(q[3])
local n = (#ARGV - 2) / 3
if maxsize and maxsize ~= -1 then
  for i = 1, n do
    if tonumber(ARGV[3 * i + 1]) > maxsize then
      return redis.error_reply("RSMQ messageTooLong")
    end
  end
end

local t = redis.call("TIME")
local secs, usecs = tonumber(t[1]), tonumber(t[2])
-- rsmq's ts: seconds followed by the first three digits of the zero-padded microseconds.
local ts = secs * 1000 + math.floor(usecs / 1000)
local score = int(ts + delay * 1000)
-- rsmq's id: base-36 of seconds followed by the six-digit microseconds. Message i of a
-- batch takes the next microsecond so that ids, and hence ZRANGEBYSCORE ties between
-- equal scores, keep the batch's order.
local micros = secs * 1000000 + usecs

-- Converting every id to base 36 in full cost more than writing it. Consecutive
-- microseconds share all but their last two digits, so those two are counted up here,
-- carrying into the head, which is converted again only when it changes: once every
-- 36^2 = 1296 ids. The two digits are always printed, as they are inside base36(m) for
-- m >= 1296; below that (a clock at the epoch) head is false and base36() does it all.
local DIGITS = { [0] = "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b",
  "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s",
  "t", "u", "v", "w", "x", "y", "z" }
local d0 = micros % 36
local d1 = (micros - d0) / 36 % 36
local high = (micros - d0 - 36 * d1) / 1296
local head = high > 0 and base36(high)

local ids, zargs, hargs = {}, {}, {}
for i = 1, n do
  local id
  if head then
    id = head .. DIGITS[d1] .. DIGITS[d0] .. ARGV[3 * i]
  else
    id = base36(micros + i - 1) .. ARGV[3 * i]
  end
  ids[i] = id
  zargs[2 * i - 1], zargs[2 * i] = score, id
  hargs[2 * i - 1], hargs[2 * i] = id, ARGV[3 * i + 2]
  d0 = d0 + 1
  if d0 == 36 then
    d0, d1 = 0, d1 + 1
    if d1 == 36 then
      d1, high = 0, high + 1
      head = base36(high)
    end
  end
end

-- One variadic ZADD and one HSET per chunk rather than two calls per message: the
-- per-call overhead was most of a batch's cost. The data is the same, as the ids are
-- distinct and nothing is read in between. A chunk of 4000 values (2000 messages) is
-- well under the 8000 that Lua's unpack() can return (LUAI_MAXCSTACK).
local CHUNK = 4000
for first = 1, 2 * n, CHUNK do
  local last = math.min(first + CHUNK - 1, 2 * n)
  redis.call("ZADD", KEYS[1], unpack(zargs, first, last))
  redis.call("HSET", KEYS[2], unpack(hargs, first, last))
end

if n > 0 then
  redis.call("HINCRBY", KEYS[2], "totalsent", int(n))
  -- One notification per call: the payload is the queue size after the whole batch,
  -- which is what the last of n rsmq sends would have published.
  if ARGV[2] == "1" then
    redis.call("PUBLISH", KEYS[3], int(redis.call("ZCARD", KEYS[1])))
  end
end
return ids
