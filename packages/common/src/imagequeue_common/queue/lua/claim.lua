-- claim: first end the caller's finished runs (as finish.lua does: one round trip per freed
-- slot instead of two), then promote due delayed jobs, check pause and the sliding-window
-- rate limit, and lease up to ARGV[6] of the best waiting jobs to worker ARGV[5].
-- KEYS[1] waiting  KEYS[2] delayed  KEYS[3] active  KEYS[4] limiter (zset of start times, us)
-- KEYS[5] events  KEYS[6] meta  KEYS[7] marker  KEYS[8] metrics  KEYS[9] completed
-- KEYS[10] failed  KEYS[11] cancelled  KEYS[12] users
-- ARGV[1] key prefix  ARGV[2] lease ms  ARGV[3] rate max (0 = none)  ARGV[4] rate window ms
-- ARGV[5] worker id  ARGV[6] jobs wanted  ARGV[7] events maxlen  ARGV[8] finish ops, then
-- 6 values per op as in finish.lua
-- Returns {status, wait ms, finish flags ('1' applied / '0' lease lost, one per op), then
-- id, payload, token, attempts, max_attempts for each leased job}; status is 'ok',
-- 'empty' (wait = ms until the next delayed job is due, or -1), 'limited' (wait = ms to wait)
-- or 'paused'.
local K = {active = KEYS[3], completed = KEYS[9], failed = KEYS[10], delayed = KEYS[2],
  cancelled = KEYS[11], events = KEYS[5], metrics = KEYS[8], marker = KEYS[7], users = KEYS[12]}
local flags = finish_ops(K, ARGV[1], ARGV[7], tonumber(ARGV[8]), 9)
local nowus = now_us()
local now = math.floor(nowus / 1000)
local meta = redis.call('HMGET', KEYS[6], 'paused', 'hold_until')
if meta[1] == '1' then
  return {'paused', 0, flags}
end
if meta[2] and tonumber(meta[2]) > now then
  return {'limited', tonumber(meta[2]) - now, flags}
end

local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  local jk = job_key(ARGV[1], id)
  local seq = redis.call('HINCRBY', KEYS[6], 'seq', 1)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], waiting_score(redis.call('HGET', jk, 'priority'), seq), id)
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
    return {'empty', -1, flags}
  end
  return {'empty', math.max(1, tonumber(nxt[2]) - now), flags}
end

local want = math.min(tonumber(ARGV[6]), nwaiting)
local rmax = tonumber(ARGV[3])
local window_us = tonumber(ARGV[4]) * 1000
-- Only jobs enqueued as rate limited (generate_image; a plain task that asks) count against
-- the limit; a job whose hash says 'unlimited' starts whenever a slot is free.
local popped
if rmax > 0 then
  -- Sliding log: the window (now - duration, now] holds every start that still counts.
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', nowus - window_us)
  local room = rmax - redis.call('ZCARD', KEYS[4])
  if room < want then
    -- Not room for all: take the best jobs in order, passing over limited ones once the
    -- room is used up (they keep their places); at most 20 looked at beyond what is wanted.
    local seen = redis.call('ZRANGE', KEYS[1], 0, want + 19)
    popped = {}
    for _, id in ipairs(seen) do
      if #popped >= want * 2 then
        break
      end
      local unlimited = redis.call('HGET', job_key(ARGV[1], id), 'unlimited') == '1'
      if unlimited or room > 0 then
        if not unlimited then
          room = room - 1
        end
        popped[#popped + 1] = id
        popped[#popped + 1] = 0
      end
    end
    if #popped == 0 then
      local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
      redis.call('HINCRBY', KEYS[8], 'rate_limited', 1)
      return {'limited', math.max(1, math.ceil((tonumber(oldest[2]) + window_us - nowus) / 1000)), flags}
    end
    local ids = {}
    for i = 1, #popped, 2 do
      ids[#ids + 1] = popped[i]
    end
    redis.call('ZREM', KEYS[1], unpack(ids))
  end
end
popped = popped or redis.call('ZPOPMIN', KEYS[1], want)
local out = {'ok', 0, flags}
local deadline = now + tonumber(ARGV[2])
local leases, starts, data = {}, {}, {}
for i = 1, #popped, 2 do
  local id = popped[i]
  local jk = job_key(ARGV[1], id)
  local f = redis.call('HMGET', jk, 'token', 'attempts', 'max_attempts', 'unlimited')
  local token = tonumber(f[1] or '0') + 1
  local attempts = tonumber(f[2] or '0') + 1
  redis.call('HSET', jk, 'state', 'active', 'started_at', now, 'worker', ARGV[5],
    'token', token, 'attempts', attempts)
  emit(KEYS[5], ARGV[7], id, 'active', 'attempt', attempts)
  leases[#leases + 1] = deadline
  leases[#leases + 1] = id
  if f[4] ~= '1' then
    starts[#starts + 1] = nowus
    starts[#starts + 1] = nowus .. ':' .. id
  end
  data[#data + 1] = data_key(ARGV[1], id)
  out[#out + 1] = id
  out[#out + 1] = false  -- the payload, filled in below from one MGET
  out[#out + 1] = token
  out[#out + 1] = attempts
  out[#out + 1] = f[3]
end
local payloads = redis.call('MGET', unpack(data))
for k = 1, #payloads do
  out[3 + (k - 1) * 5 + 2] = payloads[k]
end
redis.call('ZADD', KEYS[3], unpack(leases))
if rmax > 0 and #starts > 0 then
  redis.call('ZADD', KEYS[4], unpack(starts))
  redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[4]) * 2)
end
redis.call('HINCRBY', KEYS[8], 'claimed', #popped / 2)
return out
