-- request_limit: may this user make a request now? A sliding-window log: at most ARGV[1]
-- accepted requests in any window of ARGV[2] ms. Time comes from the Redis server, so API
-- processes whose clocks disagree still share one window. Refused requests are not logged,
-- so a client that keeps retrying too fast is let in as soon as the window allows.
-- KEYS[1] the user's log (zset of accepted request times, us)
-- ARGV[1] max requests per window (> 0)  ARGV[2] window ms
-- Returns 0 when allowed (and counted), else the us until a request would be allowed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
-- Two requests in the same microsecond need distinct members; the count after trimming
-- grows with every add inside one microsecond, so time:count is unique. The member is built
-- from TIME's strings: Lua 5.1 prints a 16-digit number as 1.7e+15, losing the microseconds.
redis.call('ZADD', KEYS[1], now, t[1] .. '.' .. t[2] .. ':' .. count)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 1000)
return 0
