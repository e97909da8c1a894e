-- enqueue: add a new job, waiting (or delayed when ARGV[7] > 0), and index it for search.
-- KEYS[1] waiting  KEYS[2] delayed  KEYS[3] events  KEYS[4] marker  KEYS[5] meta
-- KEYS[6] users (unfinished jobs per user)  KEYS[7] active
-- KEYS[8] completed  KEYS[9] failed  KEYS[10] cancelled
-- ARGV[1] key prefix  ARGV[2] job id  ARGV[3] task name  ARGV[4] payload
-- ARGV[5] priority ('high' | 'normal' | 'low')  ARGV[6] user id  ARGV[7] delay ms
-- ARGV[8] max attempts  ARGV[9] events maxlen  ARGV[10] most unfinished jobs per user (0: any)
-- ARGV[11] ref label ('' for none; the api passes the character id)
-- ARGV[12] this call's nonce: a client that sends the call again because its reply was lost
-- (a connection that died after the write) gets the answer of the first, not "exists"
-- ARGV[13] '1': an id whose job has finished (completed, failed, cancelled) is replaced by
-- the new one, which starts afresh (taskiq's kick of a task id again); '0': it exists
-- ARGV[14] '1': the job's start counts against the rate limit (claim.lua); '0': it does not
-- ARGV[15] fairness policy (see _lib.lua)
-- ARGV[16] deadline to start, ms from now (0: none): not started by then, the job expires
-- ARGV[17] de-duplication key ('' for none): while a job of that key is unfinished, its
-- place is answered instead of adding another
-- ARGV[18] most jobs waiting or delayed in the queue (0: any)
-- ARGV[19] the letters of the events its webhook hears ('' for none; see emit in _lib.lua)
-- Returns {new state ('waiting' | 'delayed'), jobs ahead of it in claim order (-1 when
-- delayed), jobs running now (for the ETA: which slots are busy), its id, its tag's distance
-- from the virtual time}; the same for the job already queued under the key (its id then
-- is not ARGV[2]); 0 when the id exists, -1
-- when the user already has ARGV[10] unfinished jobs, -2 when the queue is full (nothing
-- changed in these cases, but a counter of the refusal).
local id = ARGV[2]
local jk = job_key(ARGV[1], id)
local policy = parse_policy(ARGV[15])
-- The answer for a job in `state`: that, its place, the jobs running, its id and how far
-- ahead of the virtual time its tag is (for the ETA's cut-ins; 0 unless waiting; read
-- unless given).
local function answer(job, state, distance)
  local rank = redis.call('ZRANK', KEYS[1], job)
  if not distance then
    local priority = redis.call('HGET', job_key(ARGV[1], job), 'priority')
    distance = distance_of(ARGV[1], policy, job, priority)
  end
  return {state, rank or -1, redis.call('ZCARD', KEYS[7]), job, distance}
end
local replaces = nil
local finished = {completed = KEYS[8], failed = KEYS[9], cancelled = KEYS[10],
  expired = ARGV[1] .. 'expired'}
if redis.call('EXISTS', jk) == 1 then
  local mine = redis.call('HMGET', jk, 'nonce', 'state')
  if mine[1] == ARGV[12] then
    return answer(id, mine[2])
  end
  if ARGV[13] ~= '1' or finished[mine[2]] == nil then
    return 0
  end
  replaces = finished[mine[2]]
end
local dedup = ARGV[17]
if dedup ~= '' then
  local other = redis.call('HGET', ARGV[1] .. 'dedup', dedup)
  if other then
    local st = redis.call('HGET', job_key(ARGV[1], other), 'state')
    if st == 'waiting' or st == 'delayed' or st == 'active' then
      return answer(other, st)
    end
  end
end
local most = tonumber(ARGV[18])
if most > 0 and redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) >= most then
  redis.call('HINCRBY', ARGV[1] .. 'metrics', 'refused_length', 1)
  return -2
end
local quota = tonumber(ARGV[10])
if quota > 0 and ARGV[6] ~= '' and tonumber(redis.call('HGET', KEYS[6], ARGV[6]) or '0') >= quota then
  return -1
end
if replaces then
  -- The finished job makes way: out of its state set, its fields gone (result, error,
  -- attempts, stalls, lease); its search index entries are renewed below.
  redis.call('ZREM', replaces, id)
  redis.call('DEL', jk)
end
user_pending(KEYS[6], ARGV[6], 1)
local now = now_ms()
local delay = tonumber(ARGV[7])
local state = 'waiting'
if delay > 0 then
  state = 'delayed'
end
-- One HSET for every field (enter_waiting adds the score).
local fields = {'name', ARGV[3], 'priority', ARGV[5], 'user', ARGV[6], 'state', state,
  'attempts', 0, 'max_attempts', ARGV[8], 'created_at', now, 'nonce', ARGV[12]}
local function field(name, value)
  fields[#fields + 1] = name
  fields[#fields + 1] = value
end
if ARGV[14] == '0' then
  field('unlimited', '1')
end
local deadline = tonumber(ARGV[16])
if deadline > 0 then
  field('start_by', now + deadline)
  redis.call('ZADD', ARGV[1] .. 'deadlines', now + deadline, id)
end
if dedup ~= '' then
  field('dedup', dedup)
  redis.call('HSET', ARGV[1] .. 'dedup', dedup, id)
end
if delay > 0 then
  field('due_at', now + delay)
end
if ARGV[11] ~= '' then
  field('ref', ARGV[11])
end
local hooks = ARGV[19] or ''
if hooks ~= '' then
  field('hk', hooks)
end
redis.call('HSET', jk, unpack(fields))
redis.call('SET', data_key(ARGV[1], id), ARGV[4])
local distance = 0  -- a delayed job's
if delay > 0 then
  redis.call('ZADD', KEYS[2], now + delay, id)
else
  local _, fresh
  _, fresh, distance = enter_waiting(ARGV[1], policy, KEYS[1], id, ARGV[5], ARGV[6])
  if fresh then
    -- Jobs that took the next turn of their priority, per second: the ETA's forecast of
    -- later arrivals that will start before a job deeper in its own flow.
    count_bucket(ARGV[1] .. 'arrt', ARGV[5], math.floor(now / 1000), 1, 60)
  end
end
-- No index entry for an empty user id or ref: a job without them is found by its id only.
if ARGV[6] ~= '' then
  redis.call('ZADD', index_key(ARGV[1], 'byuser', ARGV[6]), now, id)
end
if ARGV[11] ~= '' then
  redis.call('ZADD', index_key(ARGV[1], 'byref', ARGV[11]), now, id)
end
-- Arrivals per priority per second, the last minute kept: the ETA's forecast of the jobs
-- that will cut in ahead of a lower priority.
count_bucket(ARGV[1] .. 'arr', ARGV[5], math.floor(now / 1000), 1, 60)
-- Wake for delayed jobs too: a worker blocked until a later due time must recompute it.
wake(KEYS[4])
emit(KEYS[3], ARGV[9], id, state, 'user', ARGV[6])
return answer(id, state, distance)
