-- Revokes a user in one step: empties the user's access-token registry, moves the user's
-- revocation mark to Redis' clock (never backwards), and announces the user to the gateways.
-- One script, so that no gateway can see the registry emptied without the mark, or read a
-- clock between the two that the mark does not cover.
--
-- KEYS[1]  wsmq:access:{user}   SET of the user's registered access tokens
-- KEYS[2]  wsmq:revoked:{user}  STRING, the revocation mark: Unix seconds
-- ARGV[1]  the user id (the announcement's payload)
-- ARGV[2]  seconds the mark lives (longer than any JWT issued before it can be valid)
-- ARGV[3]  the announcement channel, wsmq:revoke
--
-- Returns: {access tokens removed, gateways notified, the mark}
-- Errors:  Redis' own only (WRONGTYPE when a key holds something else)

-- TIME is not deterministic: before Redis 5 a script that writes after it must ask for
-- effects replication (from Redis 5 on it is the default, and the call a no-op).
if redis.replicate_commands then
  redis.replicate_commands()
end
local now = tonumber(redis.call("TIME")[1])
local mark = tonumber(redis.call("GET", KEYS[2]) or "0") or 0
if now > mark then
  mark = now
end
local removed = redis.call("SCARD", KEYS[1])
redis.call("DEL", KEYS[1])
redis.call("SET", KEYS[2], mark, "EX", ARGV[2])
local notified = redis.call("PUBLISH", ARGV[3], ARGV[1])
return {removed, notified, mark}
