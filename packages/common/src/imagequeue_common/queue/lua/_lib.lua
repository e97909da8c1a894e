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

-- Waiting order: priority first, then arrival sequence (FIFO inside a priority).
-- 1e13 sequence numbers per priority keep every score an exact integer in a double.
local RANKS = {high = 0, normal = 1, low = 2}
local function waiting_score(priority, seq)
  return RANKS[priority] * 1e13 + tonumber(seq)
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

-- Append one event to the queue's capped stream.
local function emit(events, maxlen, job_id, event, ...)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'job', job_id, 'event', event, ...)
end

-- Wake one worker blocked on the marker list; the list is capped so that tokens pushed
-- while nobody waits cannot pile up.
local function wake(marker)
  redis.call('LPUSH', marker, '1')
  redis.call('LTRIM', marker, 0, 63)
end

-- Unfinished jobs per user (waiting, delayed or active), for the per-user quota.
local function user_pending(users, user, by)
  if user and user ~= '' then
    if redis.call('HINCRBY', users, user, by) <= 0 then
      redis.call('HDEL', users, user)
    end
  end
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
-- completed, failed, delayed, cancelled, events, metrics, marker, users. Returns 1 if applied, 0 if
-- the caller's lease was lost (the job was recovered elsewhere): then nothing changes.
local function finish_one(K, prefix, maxlen, now, counts, moves, id, token, kind, value, err, detail)
  local jk = job_key(prefix, id)
  local cur = redis.call('HMGET', jk, 'state', 'token', 'cancel', 'started_at', 'user')
  if cur[1] ~= 'active' or cur[2] ~= token then
    return 0
  end
  moves.left[#moves.left + 1] = id
  if kind == 'retry' and cur[3] == '1' then
    kind = 'cancelled'
  end
  local ran = now - tonumber(cur[4] or now)
  if kind ~= 'retry' then
    user_pending(K.users, cur[5], -1)
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
  local moves = {left = {}, into = {}}
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
