-- Shared helpers, prepended to every script of the engine when it is loaded.
-- Time comes from the Redis server (TIME), never from clients, so leases, delays and the
-- rate-limit window agree across hosts whose clocks disagree.

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function now_ms()
  return math.floor(now_us() / 1000)
end

-- A job is a small hash (kept in Redis' compact listpack encoding) plus its payload in a
-- string beside it: a payload over 64 bytes inside the hash would turn the whole hash into
-- a hashtable, about three times larger.
local function job_key(prefix, id)
  return prefix .. 'job:' .. id
end
local function data_key(prefix, id)
  return job_key(prefix, id) .. ':data'
end

-- The events a webhook may hear, by their letter in the job hash's `hk` field.
local HOOKED = {active = 's', progress = 'p', completed = 'c', failed = 'f', cancelled = 'x',
  expired = 'e'}

-- Append one event to the queue's capped stream; when the job's webhook hears it, also to
-- the outbox (never trimmed: the webhook workers take its entries and delete them), so an
-- event is handed on in the same atomic step as the change it tells of. Progress goes to
-- the outbox at most once a second per job.
local function emit(events, maxlen, job_id, event, ...)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'job', job_id, 'event', event, ...)
  local letter = HOOKED[event]
  if not letter then
    return
  end
  local prefix = string.sub(events, 1, -7)  -- '<prefix>events'
  local jk = prefix .. 'job:' .. job_id
  local hooks = redis.call('HGET', jk, 'hk')
  if not hooks or not string.find(hooks, letter, 1, true) then
    return
  end
  if letter == 'p' then
    local now = now_ms()
    if now - tonumber(redis.call('HGET', jk, 'hp') or '0') < 1000 then
      return
    end
    redis.call('HSET', jk, 'hp', now)
  end
  redis.call('XADD', prefix .. 'outbox', '*', 'job', job_id, 'event', event)
end

-- Wake one worker blocked on the marker list; the list is capped so that tokens pushed
-- while nobody waits cannot pile up.
local function wake(marker)
  redis.call('LPUSH', marker, '1')
  redis.call('LTRIM', marker, 0, 63)
end

-- Waiting order: fair share inside a priority (start-time fair queueing). Every job of a
-- flow (one user's jobs of one priority) gets a tag = max(virtual time, the flow's finish
-- tag), and the flow's finish tag becomes tag + its increment; the waiting set is ordered by
-- tag, and claiming a job moves the virtual time up to its tag. A user's jobs stay in order
-- (each tag above the last), and a user who arrives while another has 100 waiting gets the
-- virtual time as its tag: it joins the turn being served, behind only the jobs of that
-- turn still waiting (at most one of each other user).
-- Policy (ARGV of the scripts that add to waiting): 's' strict priority (a virtual time per
-- priority; a lower priority waits for the higher ones), or 'w:<high>:<normal>:<low>'
-- weighted (one virtual time, each priority's increment 240 / weight: a high user's jobs are
-- spaced a quarter as far apart as a low one's with weights 4:1, and waiting counts, since
-- the virtual time reaches every tag).
-- Score = rank * 1e15 (strict only) + tag * 512 + tie: the jobs of one tag (one turn) go in
-- arrival order, each tie one above the highest waiting in its turn (a turn of more than 512
-- waiting jobs holds its last ones at tie 511, in id order: never ahead of earlier ones).
-- Every score stays an exact integer in a double: a tier holds tags below 1.9e12 (strict) or
-- 7.8e12 (weighted), turns enough for years at 1000 a second.
local RANKS = {high = 0, normal = 1, low = 2}
local TIER = 1e15
local TIES = 512
local PARKED = 4e15  -- added to the score of a job whose user is at USER_MAX_ACTIVE

local function parse_policy(text)
  if text == 's' then
    return {strict = true, inc = {high = 1, normal = 1, low = 1}}
  end
  local h, n, l = string.match(text, '^w:(%d+):(%d+):(%d+)$')
  if not h then
    error('bad fairness policy ' .. tostring(text))
  end
  return {strict = false, inc = {high = tonumber(h), normal = tonumber(n), low = tonumber(l)}}
end

local function vt_field(policy, priority)
  if policy.strict then
    return 'vt:' .. priority
  end
  return 'vt'
end

-- The tag of a waiting job's score.
local function tag_of(policy, priority, score)
  if policy.strict then
    score = score - RANKS[priority] * TIER
  end
  return math.floor(score / TIES)
end

-- Waiting jobs per user (parked ones too), a zset: how many users wait, and who waits most.
local function count_waiting(prefix, user, by)
  if user and user ~= '' then
    if tonumber(redis.call('ZINCRBY', prefix .. 'uwait', by, user)) <= 0 then
      redis.call('ZREM', prefix .. 'uwait', user)
    end
  end
end

-- The score of tag `tag` of `priority`'s turn with tie 0.
local function turn_base(policy, priority, tag)
  local base = tag * TIES
  if policy.strict then
    base = RANKS[priority] * TIER + base
  end
  return base
end

-- The tag a new job of the flow would get, and whether it joins the turn being served.
-- Finish tags are kept per virtual time (a zset 'ftag:<vt field>' of '<priority>:<user>'),
-- and those the virtual time has reached go (claim.lua): they mean what no entry means.
local function next_tag(prefix, policy, priority, user)
  local vf = vt_field(policy, priority)
  local vt = tonumber(redis.call('HGET', prefix .. 'meta', vf) or '0')
  local finish = tonumber(redis.call('ZSCORE', prefix .. 'ftag:' .. vf,
    priority .. ':' .. (user or '')) or '0')
  return math.max(vt, finish), finish <= vt, vt
end

local function enter_waiting(prefix, policy, waiting, id, priority, user)
  local tag, fresh, vt = next_tag(prefix, policy, priority, user)
  redis.call('ZADD', prefix .. 'ftag:' .. vt_field(policy, priority),
    tag + policy.inc[priority], priority .. ':' .. (user or ''))
  local base = turn_base(policy, priority, tag)
  local tie = 0
  local top = redis.call('ZREVRANGEBYSCORE', waiting, base + TIES - 1, base, 'WITHSCORES',
    'LIMIT', 0, 1)
  if #top > 0 then
    tie = math.min(tonumber(top[2]) - base + 1, TIES - 1)
  end
  local score = base + tie
  redis.call('ZADD', waiting, score, id)
  redis.call('HSET', job_key(prefix, id), 'state', 'waiting', 'score', score)
  count_waiting(prefix, user, 1)
  -- fresh: the flow had no finish tag beyond the virtual time, so the job joins the turn
  -- being served (as a newcomer's does); the ETA counts such arrivals as cut-ins. The last
  -- value is the tag's distance from the virtual time (see distance_of).
  return score, fresh, tag - vt
end

-- How far a waiting job's tag is ahead of its virtual time (tag units; 0 when it is not
-- waiting): newcomers arriving later take their turns before it while this is above 0.
local function distance_of(prefix, policy, id, priority)
  local score = redis.call('ZSCORE', prefix .. 'waiting', id)
  if not score or not priority then
    return 0
  end
  score = tonumber(score)
  if score >= PARKED then
    score = score - PARKED
  end
  local vt = tonumber(redis.call('HGET', prefix .. 'meta', vt_field(policy, priority)) or '0')
  return math.max(tag_of(policy, priority, score) - vt, 0)
end

-- Back to waiting at the job's old place (a stalled or released run): its stored score.
local function return_waiting(prefix, waiting, id, user)
  local jk = job_key(prefix, id)
  redis.call('ZADD', waiting, tonumber(redis.call('HGET', jk, 'score') or '0'), id)
  redis.call('HSET', jk, 'state', 'waiting')
  count_waiting(prefix, user, 1)
end

-- A waiting job leaves the waiting set (claimed, cancelled, removed), parked or not.
local function leave_waiting(prefix, waiting, id, user)
  redis.call('ZREM', waiting, id)
  if user and user ~= '' then
    redis.call('ZREM', prefix .. 'parked:' .. user, id)
  end
  count_waiting(prefix, user, -1)
end

-- `ended` of `user`'s runs ended (finished, stalled, released): as many slots less in use
-- (running jobs per user: a zset), and as many of the user's parked jobs as the cap now
-- allows go back to their places, so the next claim finds them without scanning.
local function user_slots_freed(prefix, waiting, marker, user, cap, ended)
  if not user or user == '' then
    return
  end
  local ua = prefix .. 'uactive'
  local running = tonumber(redis.call('ZINCRBY', ua, -ended, user))
  if running <= 0 then
    redis.call('ZREM', ua, user)
    running = 0
  end
  -- Without a cap, jobs parked under an earlier one are claimed from where they are.
  if cap == 0 or running >= cap then
    return
  end
  local pk = prefix .. 'parked:' .. user
  local back = redis.call('ZRANGE', pk, 0, cap - running - 1, 'WITHSCORES')
  if #back == 0 then
    return
  end
  local args = {}
  for i = 1, #back, 2 do
    args[#args + 1] = tonumber(back[i + 1])
    args[#args + 1] = back[i]
    redis.call('ZREM', pk, back[i])
  end
  redis.call('ZADD', waiting, 'XX', unpack(args))
  wake(marker)
end

-- Unfinished jobs per user (waiting, delayed or active), for the per-user quota.
local function user_pending(users, user, by)
  if user and user ~= '' then
    if redis.call('HINCRBY', users, user, by) <= 0 then
      redis.call('HDEL', users, user)
    end
  end
end

-- De-duplication: a job enqueued with a key (the api: its character and pose) is that key's
-- job in the 'dedup' hash while it is unfinished; forget_dedup lets the key go when it ends.
local function forget_dedup(prefix, id, key)
  if key and key ~= '' and redis.call('HGET', prefix .. 'dedup', key) == id then
    redis.call('HDEL', prefix .. 'dedup', key)
  end
end

-- Deadlines to start: a job enqueued with one has 'start_by' (ms) and an entry in the
-- 'deadlines' zset until it is claimed. One still waiting or delayed at start_by ends
-- 'expired' without ever running. Returns 1 if it expired, 0 if it was not waiting.
local function expire_job(prefix, maxlen, now, id)
  local jk = job_key(prefix, id)
  local f = redis.call('HMGET', jk, 'state', 'user', 'dedup')
  redis.call('ZREM', prefix .. 'deadlines', id)
  if f[1] == 'waiting' then
    leave_waiting(prefix, prefix .. 'waiting', id, f[2])
  elseif f[1] == 'delayed' then
    redis.call('ZREM', prefix .. 'delayed', id)
  else
    return 0
  end
  redis.call('ZADD', prefix .. 'expired', now, id)
  redis.call('HSET', jk, 'state', 'expired', 'finished_at', now,
    'error', 'not started before its deadline')
  user_pending(prefix .. 'users', f[2], -1)
  forget_dedup(prefix, id, f[3])
  emit(prefix .. 'events', maxlen, id, 'expired')
  return 1
end

-- Expire every job whose deadline has passed (at most `limit` per call; claim.lua checks
-- each job it takes as well, so none past its deadline ever runs). Returns how many.
local function expire_due(prefix, maxlen, now, limit)
  local due = redis.call('ZRANGEBYSCORE', prefix .. 'deadlines', '-inf', now, 'LIMIT', 0, limit)
  local n = 0
  for _, id in ipairs(due) do
    n = n + expire_job(prefix, maxlen, now, id)
  end
  if n > 0 then
    redis.call('HINCRBY', prefix .. 'metrics', 'expired', n)
  end
  return n
end

-- Search indexes: the jobs of one user id and of one ref label, each a zset (score = created
-- ms). Written by enqueue; every script that deletes a job hash takes its id out of both, so
-- the indexes hold exactly the jobs that exist.
local function index_key(prefix, kind, value)
  return prefix .. kind .. ':' .. value
end
local function unindex(prefix, id, user, ref)
  if user and user ~= '' then
    redis.call('ZREM', index_key(prefix, 'byuser', user), id)
  end
  if ref and ref ~= '' then
    redis.call('ZREM', index_key(prefix, 'byref', ref), id)
  end
end

-- Drop a bucketed hash's fields (named <kind>:<bucket>) older than bucket `oldest`. Called
-- only when a write opened a new bucket, so a hash is scanned once per bucket, not per run.
local function prune_buckets(key, oldest)
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if tonumber(string.match(f, ':(%d+)$')) < oldest then
      redis.call('HDEL', key, f)
    end
  end
end

-- Add `by` to field <kind>:<bucket>; a field that did not exist before opens a new bucket,
-- and then the fields older than `keep` buckets go.
local function count_bucket(key, kind, bucket, by, keep)
  if redis.call('HINCRBY', key, kind .. ':' .. bucket, by) == by then
    prune_buckets(key, bucket - keep)
  end
end

-- Completions and dead letters per minute for the last hour, in one hash (fields c:<minute>,
-- f:<minute>).
local function count_minute(prefix, now, completed, failed)
  local tpm = prefix .. 'tpm'
  local m = math.floor(now / 60000)
  if completed > 0 then
    count_bucket(tpm, 'c', m, completed, 60)
  end
  if failed > 0 then
    count_bucket(tpm, 'f', m, failed, 60)
  end
end

-- End one leased run (see finish.lua for the op format). K holds the key names: active,
-- completed, failed, delayed, cancelled, events, metrics, marker, users, waiting, and K.cap
-- (USER_MAX_ACTIVE). Returns 1 if applied, 0 if the caller's lease was lost (the job was
-- recovered elsewhere): then nothing changes.
local function finish_one(K, prefix, maxlen, now, counts, moves, id, token, kind, value, err, detail)
  local jk = job_key(prefix, id)
  local cur = redis.call('HMGET', jk, 'state', 'token', 'cancel', 'started_at', 'user', 'dedup')
  if cur[1] ~= 'active' or cur[2] ~= token then
    return 0
  end
  moves.left[#moves.left + 1] = id
  if kind == 'retry' and cur[3] == '1' then
    kind = 'cancelled'
  end
  local ran = now - tonumber(cur[4] or now)
  if cur[5] and cur[5] ~= '' then
    moves.freed[cur[5]] = (moves.freed[cur[5]] or 0) + 1
  end
  if kind ~= 'retry' then
    user_pending(K.users, cur[5], -1)
    forget_dedup(prefix, id, cur[6])
  end
  if kind == 'completed' then
    moves.push(K.completed, now, id)
    -- A last error from an earlier attempt stays: it tells why the job needed retries.
    redis.call('HSET', jk, 'state', 'completed', 'finished_at', now, 'result', value, 'progress', 100)
    counts.run_ms_completed = counts.run_ms_completed + ran
    emit(K.events, maxlen, id, 'completed', 'ms', ran)
  elseif kind == 'retry' then
    local due_at = now + tonumber(value)
    moves.push(K.delayed, due_at, id)
    redis.call('HSET', jk, 'state', 'delayed', 'due_at', due_at, 'error', err, 'error_detail', detail)
    wake(K.marker)
    emit(K.events, maxlen, id, 'delayed', 'due_at', due_at, 'error', err)
  elseif kind == 'failed' then
    moves.push(K.failed, now, id)
    redis.call('HSET', jk, 'state', 'failed', 'finished_at', now, 'error', err, 'error_detail', detail)
    emit(K.events, maxlen, id, 'failed', 'error', err)
  else
    moves.push(K.cancelled, now, id)
    redis.call('HSET', jk, 'state', 'cancelled', 'finished_at', now)
    emit(K.events, maxlen, id, 'cancelled')
  end
  counts[kind] = counts[kind] + 1
  return 1
end

-- Apply n finish ops from ARGV starting at index first (6 values each); returns a string of
-- '1' (applied) and '0' (lease lost), one character per op.
local function finish_ops(K, prefix, maxlen, n, first)
  if n == 0 then
    return ''
  end
  local now = now_ms()
  local applied = {}
  local counts = {completed = 0, retry = 0, failed = 0, cancelled = 0, run_ms_completed = 0}
  -- Set moves are gathered and done once per batch: one ZREM, one ZADD per target set.
  local moves = {left = {}, into = {}, freed = {}}
  moves.push = function(set, score, id)
    local t = moves.into[set]
    if not t then
      t = {}
      moves.into[set] = t
    end
    t[#t + 1] = score
    t[#t + 1] = id
  end
  local i = first
  for k = 1, n do
    applied[k] = finish_one(K, prefix, maxlen, now, counts, moves,
      ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5])
    i = i + 6
  end
  if #moves.left > 0 then
    redis.call('ZREM', K.active, unpack(moves.left))
  end
  for set, pairs_ in pairs(moves.into) do
    redis.call('ZADD', set, unpack(pairs_))
  end
  for user, ended in pairs(moves.freed) do
    user_slots_freed(prefix, K.waiting, K.marker, user, K.cap, ended)
  end
  -- Completions per 10 s bucket (count, run ms) for the live throughput and mean job time,
  -- in one hash that keeps the last minute of buckets.
  if counts.completed > 0 then
    local tput = prefix .. 'tput'
    local b = math.floor(now / 10000)
    count_bucket(tput, 'c', b, counts.completed, 6)
    redis.call('HINCRBY', tput, 'ms:' .. b, counts.run_ms_completed)
  end
  if counts.completed > 0 or counts.failed > 0 then
    count_minute(prefix, now, counts.completed, counts.failed)
  end
  -- Counters once per batch, not once per job.
  local names = {completed = 'completed', retry = 'retried', failed = 'failed',
    cancelled = 'cancelled', run_ms_completed = 'run_ms_completed'}
  for field, count in pairs(counts) do
    if count > 0 then
      redis.call('HINCRBY', K.metrics, names[field], count)
    end
  end
  return table.concat(applied)
end
