-- permit: may a running job send its request to the AI API now? The same sliding-window
-- limit as claim, counted again at the moment of sending: the time between a claim and its
-- request varies (store reads, a busy event loop), so limiting claims alone lets the GPU
-- side see bursts. The window is longer by a guard that absorbs the jitter between this
-- answer and the request's arrival. A 429 hold stops permits as it stops claims.
-- KEYS[1] upstream limiter (zset of permit times, us)  KEYS[2] meta  KEYS[3] metrics
-- ARGV[1] rate max (0 = no limit, the hold only)  ARGV[2] window ms (duration + guard)  ARGV[3] member (job:token)
-- Returns 0 when the request may go now, else the ms to wait before asking again.
local nowus = now_us()
local now = math.floor(nowus / 1000)
local hold = tonumber(redis.call('HGET', KEYS[2], 'hold_until') or '0')
if hold > now then
  return hold - now
end
if tonumber(ARGV[1]) == 0 then
  return 0
end
local window_us = tonumber(ARGV[2]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', nowus - window_us)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  redis.call('HINCRBY', KEYS[3], 'upstream_waits', 1)
  return math.max(1, math.ceil((tonumber(oldest[2]) + window_us - nowus) / 1000))
end
redis.call('ZADD', KEYS[1], nowus, nowus .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 0
