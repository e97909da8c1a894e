-- claim: first end the caller's finished runs (as finish.lua does: one round trip per freed
-- slot instead of two), then promote due delayed jobs, check pause and the sliding-window
-- rate limit, and lease up to ARGV[6] of the best waiting jobs to worker ARGV[5].
-- KEYS[1] waiting  KEYS[2] delayed  KEYS[3] active  KEYS[4] limiter (zset of start times, us)
-- KEYS[5] events  KEYS[6] meta  KEYS[7] marker  KEYS[8] metrics  KEYS[9] completed
-- KEYS[10] failed  KEYS[11] cancelled  KEYS[12] users
-- ARGV[1] key prefix  ARGV[2] lease ms  ARGV[3] rate max (0 = none)  ARGV[4] rate window ms
-- ARGV[5] worker id  ARGV[6] jobs wanted  ARGV[7] events maxlen
-- ARGV[8] most active jobs per user (0: any)  ARGV[9] fairness policy (see _lib.lua)
-- ARGV[10] finish ops, then 6 values per op as in finish.lua
-- Returns {status, wait ms, finish flags ('1' applied / '0' lease lost, one per op), then
-- id, payload, token, attempts, max_attempts for each leased job}; status is 'ok',
-- 'empty' (wait = ms until the next delayed job is due, or -1), 'limited' (wait = ms to wait),
-- 'more' (this call parked many jobs of users at their cap, or expired jobs past their
-- deadline, and leased none: ask again now)
-- or 'paused'.
local K = {active = KEYS[3], completed = KEYS[9], failed = KEYS[10], delayed = KEYS[2],
  cancelled = KEYS[11], events = KEYS[5], metrics = KEYS[8], marker = KEYS[7], users = KEYS[12],
  waiting = KEYS[1], cap = tonumber(ARGV[8])}
local prefix = ARGV[1]
local flags = finish_ops(K, prefix, ARGV[7], tonumber(ARGV[10]), 11)
local policy = parse_policy(ARGV[9])
local nowus = now_us()
local now = math.floor(nowus / 1000)
-- Deadlines pass whether the queue runs or is paused.
expire_due(prefix, ARGV[7], now, 1000)
local meta = redis.call('HMGET', KEYS[6], 'paused', 'hold_until')
if meta[1] == '1' then
  return {'paused', 0, flags}
end
if meta[2] and tonumber(meta[2]) > now then
  return {'limited', tonumber(meta[2]) - now, flags}
end

local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  local jk = job_key(prefix, id)
  local f = redis.call('HMGET', jk, 'priority', 'user')
  redis.call('ZREM', KEYS[2], id)
  enter_waiting(prefix, policy, KEYS[1], id, f[1], f[2])
  redis.call('HDEL', jk, 'due_at')
  emit(KEYS[5], ARGV[7], id, 'waiting')
end

local function nothing_waiting()
  -- Nothing to do: drop stale wake-up tokens so an idle worker really blocks (a finish of
  -- a capped user's run, an enqueue or a retry wakes it).
  redis.call('DEL', KEYS[7])
  local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #nxt == 0 then
    return {'empty', -1, flags}
  end
  return {'empty', math.max(1, tonumber(nxt[2]) - now), flags}
end

local nwaiting = redis.call('ZCARD', KEYS[1])
if nwaiting == 0 then
  return nothing_waiting()
end
local want = math.min(tonumber(ARGV[6]), nwaiting)
local rmax = tonumber(ARGV[3])
local window_us = tonumber(ARGV[4]) * 1000
-- Only jobs enqueued as rate limited (generate_image; a plain task that asks) count against
-- the limit; a job whose hash says 'unlimited' starts whenever a slot is free.
local room = want
if rmax > 0 then
  -- Sliding log: the window (now - duration, now] holds every start that still counts.
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', nowus - window_us)
  room = rmax - redis.call('ZCARD', KEYS[4])
end

-- Each taken job: {id, score, fields}, fields as FIELDS lists them.
local FIELDS = {'user', 'unlimited', 'priority', 'token', 'attempts', 'max_attempts', 'start_by'}
local function fields_of(id)
  return redis.call('HMGET', job_key(prefix, id), unpack(FIELDS))
end
-- Past its deadline (one the sweep above had no room for): expired, not taken.
local expired_now = 0
local function past_deadline(id, f)
  if f[7] and tonumber(f[7]) <= now then
    expired_now = expired_now + expire_job(prefix, ARGV[7], now, id)
    return true
  end
  return false
end
local cap = K.cap
local taken, passed, parks = {}, 0, 0
if cap == 0 and room >= want then
  -- No cap and room for all: the best jobs, as they stand (a job parked under an earlier
  -- cap comes last, and now is taken like any other).
  local popped = redis.call('ZPOPMIN', KEYS[1], want)
  for i = 1, #popped, 2 do
    local id, score = popped[i], tonumber(popped[i + 1])
    local f = fields_of(id)
    if score >= PARKED then
      redis.call('ZREM', prefix .. 'parked:' .. (f[1] or ''), id)
      score = score - PARKED
    end
    if not past_deadline(id, f) then
      taken[#taken + 1] = {id, score, f}
    end
  end
else
  -- Walk the waiting set in order. A job of a user at the cap is parked (moved behind every
  -- unparked job, and listed under its user, whose next finished run brings it back), so it
  -- is looked at once, not on every claim; a rate-limited job is passed over, keeping its
  -- place, once the room in the window is used up (at most 20 of those looked at).
  local running = {}
  local function running_of(user)
    if running[user] == nil then
      running[user] = tonumber(redis.call('ZSCORE', prefix .. 'uactive', user) or '0')
    end
    return running[user]
  end
  local extra = 0
  if room < want then
    extra = 20
  end
  while #taken < want and passed <= 20 and parks < 1000 do
    local batch = redis.call('ZRANGE', KEYS[1], passed, passed + want - #taken + extra - 1,
      'WITHSCORES')
    if #batch == 0 then
      break
    end
    local parked_only = false
    for i = 1, #batch, 2 do
      local id, score = batch[i], tonumber(batch[i + 1])
      if score >= PARKED then
        parked_only = true
        break
      end
      local f = fields_of(id)
      local user = f[1] or ''
      if past_deadline(id, f) then
        -- gone from waiting: the next job moves up into its place
      elseif cap > 0 and user ~= '' and running_of(user) >= cap then
        redis.call('ZADD', KEYS[1], 'XX', PARKED + score, id)
        redis.call('ZADD', prefix .. 'parked:' .. user, score, id)
        parks = parks + 1
      elseif f[2] ~= '1' and room <= 0 then
        passed = passed + 1
      else
        if f[2] ~= '1' then
          room = room - 1
        end
        taken[#taken + 1] = {id, score, f}
        if user ~= '' then
          running[user] = running_of(user) + 1
        end
        redis.call('ZREM', KEYS[1], id)
      end
      if #taken >= want or passed > 20 then
        break
      end
    end
    if parked_only then
      break
    end
  end
end

if expired_now > 0 then
  redis.call('HINCRBY', KEYS[8], 'expired', expired_now)
end
if #taken == 0 then
  if expired_now > 0 then
    return {'more', 0, flags}
  end
  if passed > 0 then
    local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    redis.call('HINCRBY', KEYS[8], 'rate_limited', 1)
    return {'limited', math.max(1, math.ceil((tonumber(oldest[2]) + window_us - nowus) / 1000)), flags}
  end
  if parks >= 1000 then
    return {'more', 0, flags}
  end
  return nothing_waiting()
end

local out = {'ok', 0, flags}
local deadline = now + tonumber(ARGV[2])
local leases, starts, data = {}, {}, {}
local vts, per_user, deadlined = {}, {}, {}
for _, t in ipairs(taken) do
  local id, score, f = t[1], t[2], t[3]
  local user, priority = f[1] or '', f[3]
  local jk = job_key(prefix, id)
  local token = tonumber(f[4] or '0') + 1
  local attempts = tonumber(f[5] or '0') + 1
  redis.call('HSET', jk, 'state', 'active', 'started_at', now, 'worker', ARGV[5],
    'token', token, 'attempts', attempts)
  local tag = tag_of(policy, priority, score)
  local vf = vt_field(policy, priority)
  vts[vf] = math.max(vts[vf] or 0, tag)
  per_user[user] = (per_user[user] or 0) + 1
  emit(KEYS[5], ARGV[7], id, 'active', 'attempt', attempts)
  leases[#leases + 1] = deadline
  leases[#leases + 1] = id
  if f[7] then
    deadlined[#deadlined + 1] = id
  end
  if f[2] ~= '1' then
    starts[#starts + 1] = nowus
    starts[#starts + 1] = nowus .. ':' .. id
  end
  data[#data + 1] = data_key(prefix, id)
  out[#out + 1] = id
  out[#out + 1] = false  -- the payload, filled in below from one MGET
  out[#out + 1] = token
  out[#out + 1] = attempts
  out[#out + 1] = f[6]
end
-- The virtual time moves up to the claimed tags, and the finish tags it has reached go
-- (a flow's next job starts from the virtual time then, as a new flow's does). Counts per
-- user change once per user, not per job.
for vf, tag in pairs(vts) do
  if tag > tonumber(redis.call('HGET', KEYS[6], vf) or '0') then
    redis.call('HSET', KEYS[6], vf, tag)
    redis.call('ZREMRANGEBYSCORE', prefix .. 'ftag:' .. vf, '-inf', tag)
  end
end
for user, n in pairs(per_user) do
  if user ~= '' then
    count_waiting(prefix, user, -n)
    redis.call('ZINCRBY', prefix .. 'uactive', n, user)
  end
end
local payloads = redis.call('MGET', unpack(data))
for k = 1, #payloads do
  out[3 + (k - 1) * 5 + 2] = payloads[k]
end
redis.call('ZADD', KEYS[3], unpack(leases))
if #deadlined > 0 then
  redis.call('ZREM', prefix .. 'deadlines', unpack(deadlined))
end
if rmax > 0 and #starts > 0 then
  redis.call('ZADD', KEYS[4], unpack(starts))
  redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[4]) * 2)
end
redis.call('HINCRBY', KEYS[8], 'claimed', #taken)
return out
