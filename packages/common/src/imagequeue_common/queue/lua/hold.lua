-- hold: stop every worker claiming for ARGV[1] ms (an upstream 429 with Retry-After). A longer
-- hold already in place is kept.
-- KEYS[1] meta
-- ARGV[1] hold ms
-- Returns the hold's end, in server ms.
local untl = now_ms() + tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 'hold_until') or '0')
if cur > untl then
  return cur
end
redis.call('HSET', KEYS[1], 'hold_until', untl)
return untl
