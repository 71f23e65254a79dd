-- Shared by the scripts that need an existing queue; scripts.rs puts it in front of them,
-- so each script stays one EVALSHA and this text is written once.
--
-- KEYS     none of its own: each function takes the keys it uses from its script
-- ARGV     none of its own
-- Returns: nothing; it defines local functions for the script after it
--
-- Lua numbers are doubles: integers below 2^53 (16 digits) are exact, but tostring()
-- and ".." print only 14 significant digits, so every number that goes back into
-- Redis is formatted with int().

local function int(n)
  return string.format("%.0f", n)
end

-- Lowercase base 36 of a whole number, as JavaScript's n.toString(36): the time part of
-- rsmq's message ids (the µs of the send).
local function base36(n)
  -- n < 2^53 and n / 36 < 2^48, so % and / below stay exact.
  local digits = "0123456789abcdefghijklmnopqrstuvwxyz"
  local s = ""
  repeat
    local d = n % 36
    s = string.sub(digits, d + 1, d + 1) .. s
    n = (n - d) / 36
  until n == 0
  return s
end

-- The queue hash's vt, delay and maxsize, then the other fields named, in that order;
-- nil when any of the first three is missing, which is how rsmq 0.12 tells a queue that
-- does not exist ("queueNotFound").
local function queue_fields(hash, ...)
  local q = redis.call("HMGET", hash, "vt", "delay", "maxsize", ...)
  if not q[1] or not q[2] or not q[3] then
    return nil
  end
  return q
end

-- Redis TIME as rsmq's ts (ms), and the raw reply.
local function now_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), t
end
