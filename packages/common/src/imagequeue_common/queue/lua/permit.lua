-- permit: may a running job send its request to the AI API now? The same sliding-window
-- limit as claim, counted again at the moment of sending: the time between a claim and its
-- request varies (store reads, a busy event loop), so limiting claims alone lets the GPU
-- side see bursts. A request permitted at p arrives at the GPU side between p and p + its
-- slack (RATE_LIMIT_GUARD_MS for the network, plus its worker's recent loop delay). So a
-- permit is kept under the latest time its request may arrive, p + slack, and a new one
-- counts every kept permit whose request may still arrive within one window of its own:
-- a late worker's permit holds back the permits after it, whichever worker asks for them.
-- (Widening only the asking worker's window, as before, let a prompt worker trim a late
-- worker's permit too early: the GPU side then saw max + 1 in one window.)
-- A 429 hold stops permits as it stops claims.
-- KEYS[1] upstream limiter (zset: member time:job:token, score = latest arrival, us)
-- KEYS[2] meta  KEYS[3] metrics
-- ARGV[1] rate max (0 = no limit, the hold only)  ARGV[2] window ms  ARGV[3] member (job:token)
-- ARGV[4] this request's slack ms (guard + the worker's loop delay)
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
local slack_us = tonumber(ARGV[4]) * 1000
-- Gone for good: a request that arrived by now - window is out of every window to come.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', nowus - window_us)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  redis.call('HINCRBY', KEYS[3], 'upstream_waits', 1)
  return math.max(1, math.ceil((tonumber(oldest[2]) + window_us - nowus) / 1000))
end
redis.call('ZADD', KEYS[1], nowus + slack_us, nowus .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], (tonumber(ARGV[2]) + tonumber(ARGV[4])) * 2)
return 0
