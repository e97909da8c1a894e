-- claim: promote due delayed jobs, check pause and the sliding-window rate limit, then lease
-- up to ARGV[6] of the best waiting jobs to worker ARGV[5].
-- KEYS[1] waiting  KEYS[2] delayed  KEYS[3] active  KEYS[4] limiter (zset of start times, us)
-- KEYS[5] events  KEYS[6] meta  KEYS[7] marker  KEYS[8] metrics
-- ARGV[1] key prefix  ARGV[2] lease ms  ARGV[3] rate max (0 = none)  ARGV[4] rate window ms
-- ARGV[5] worker id  ARGV[6] jobs wanted  ARGV[7] events maxlen
-- Returns {'ok', 0, id, payload, token, attempts, max_attempts, ...}
--      or {'empty', ms until the next delayed job is due, or -1}
--      or {'limited', ms to wait}  or {'paused', 0}
local nowus = now_us()
local now = math.floor(nowus / 1000)
local meta = redis.call('HMGET', KEYS[6], 'paused', 'hold_until')
if meta[1] == '1' then
  return {'paused', 0}
end
if meta[2] and tonumber(meta[2]) > now then
  return {'limited', tonumber(meta[2]) - now}
end

local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  local jk = ARGV[1] .. 'job:' .. id
  local seq = redis.call('HINCRBY', KEYS[6], 'seq', 1)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], waiting_score(redis.call('HGET', jk, 'rank'), seq), id)
  redis.call('HSET', jk, 'state', 'waiting', 'seq', seq)
  redis.call('HDEL', jk, 'due_at')
  emit(KEYS[5], ARGV[7], id, 'waiting')
end

local nwaiting = redis.call('ZCARD', KEYS[1])
if nwaiting == 0 then
  -- Nothing to do: drop stale wake-up tokens so an idle worker really blocks.
  redis.call('DEL', KEYS[7])
  local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #nxt == 0 then
    return {'empty', -1}
  end
  return {'empty', math.max(1, tonumber(nxt[2]) - now)}
end

local want = math.min(tonumber(ARGV[6]), nwaiting)
local rmax = tonumber(ARGV[3])
local window_us = tonumber(ARGV[4]) * 1000
if rmax > 0 then
  -- Sliding log: the window (now - duration, now] holds every start that still counts.
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', nowus - window_us)
  local used = redis.call('ZCARD', KEYS[4])
  if used >= rmax then
    local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    redis.call('HINCRBY', KEYS[8], 'rate_limited', 1)
    return {'limited', math.max(1, math.ceil((tonumber(oldest[2]) + window_us - nowus) / 1000))}
  end
  want = math.min(want, rmax - used)
end

local popped = redis.call('ZPOPMIN', KEYS[1], want)
local out = {'ok', 0}
local deadline = now + tonumber(ARGV[2])
for i = 1, #popped, 2 do
  local id = popped[i]
  local jk = ARGV[1] .. 'job:' .. id
  if rmax > 0 then
    redis.call('ZADD', KEYS[4], nowus, nowus .. ':' .. id)
  end
  local token = redis.call('HINCRBY', jk, 'token', 1)
  local attempts = redis.call('HINCRBY', jk, 'attempts', 1)
  redis.call('HSET', jk, 'state', 'active', 'started_at', now, 'worker', ARGV[5])
  redis.call('ZADD', KEYS[3], deadline, id)
  local fields = redis.call('HMGET', jk, 'payload', 'max_attempts')
  emit(KEYS[5], ARGV[7], id, 'active', 'attempt', attempts)
  out[#out + 1] = id
  out[#out + 1] = fields[1]
  out[#out + 1] = token
  out[#out + 1] = attempts
  out[#out + 1] = fields[2]
end
if rmax > 0 then
  redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[4]) * 2)
end
redis.call('HINCRBY', KEYS[8], 'claimed', #popped / 2)
return out
