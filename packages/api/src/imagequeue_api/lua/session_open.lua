-- session_open: store a new dashboard session and index it; drop the index entries of
-- sessions that have ended since (idle or past their lifetime: their hashes expired).
-- Logins are rare, so each one sweeps the whole index, which stays as small as the number
-- of logins within one lifetime.
-- KEYS[1] the session's hash  KEYS[2] the index (zset: session digest -> end of lifetime, ms)
-- ARGV[1] digest  ARGV[2] user  ARGV[3] role  ARGV[4] csrf token  ARGV[5] password fingerprint
-- ARGV[6] idle ms  ARGV[7] lifetime ms
-- ARGV[8] prefix of session hashes (<prefix><digest>, under the same hash tag as KEYS)
-- Returns {created ms, ends ms} on the Redis clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lifetime = tonumber(ARGV[7])
local ends = now + lifetime
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
for _, digest in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('EXISTS', ARGV[8] .. digest) == 0 then
    redis.call('ZREM', KEYS[2], digest)
  end
end
-- %d: Lua 5.1 would print a large number as 1.7e+12 in places; ms fit a 64-bit integer.
redis.call('HSET', KEYS[1], 'user', ARGV[2], 'role', ARGV[3], 'csrf', ARGV[4],
  'fingerprint', ARGV[5], 'created_ms', string.format('%d', now),
  'ends_ms', string.format('%d', ends))
redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[6]), lifetime))
redis.call('ZADD', KEYS[2], ends, ARGV[1])
redis.call('PEXPIRE', KEYS[2], lifetime)
return {now, ends}
