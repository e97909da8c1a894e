-- finish: end a batch of leased runs. Each op applies only while the job is still active under
-- the caller's lease token; a run whose lease was lost (recovered as stalled) changes nothing.
-- KEYS[1] active  KEYS[2] completed  KEYS[3] failed  KEYS[4] delayed  KEYS[5] cancelled
-- KEYS[6] events  KEYS[7] metrics  KEYS[8] marker
-- ARGV[1] key prefix  ARGV[2] events maxlen  ARGV[3] number of ops, then 5 values per op:
--   job id, lease token, kind ('completed' | 'retry' | 'failed' | 'cancelled'),
--   value (result JSON | retry delay ms | ''), error text ('' for none)
-- Returns one integer per op: 1 applied, 0 lease lost.
local now = now_ms()
local applied = {}
local i = 4
for n = 1, tonumber(ARGV[3]) do
  local id, token, kind, value, err = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  local jk = ARGV[1] .. 'job:' .. id
  local cur = redis.call('HMGET', jk, 'state', 'token', 'cancel', 'started_at')
  if cur[1] ~= 'active' or cur[2] ~= token then
    applied[n] = 0
  else
    redis.call('ZREM', KEYS[1], id)
    if kind == 'retry' and cur[3] == '1' then
      kind = 'cancelled'
    end
    local ran = now - tonumber(cur[4] or now)
    if kind == 'completed' then
      redis.call('ZADD', KEYS[2], now, id)
      redis.call('HSET', jk, 'state', 'completed', 'finished_at', now, 'result', value,
        'progress', 100)
      redis.call('HDEL', jk, 'error')
      redis.call('HINCRBY', KEYS[7], 'completed', 1)
      redis.call('HINCRBY', KEYS[7], 'run_ms_completed', ran)
      emit(KEYS[6], ARGV[2], id, 'completed', 'ms', ran)
    elseif kind == 'retry' then
      local due_at = now + tonumber(value)
      redis.call('ZADD', KEYS[4], due_at, id)
      redis.call('HSET', jk, 'state', 'delayed', 'due_at', due_at, 'error', err)
      redis.call('HINCRBY', KEYS[7], 'retried', 1)
      wake(KEYS[8])
      emit(KEYS[6], ARGV[2], id, 'delayed', 'due_at', due_at, 'error', err)
    elseif kind == 'failed' then
      redis.call('ZADD', KEYS[3], now, id)
      redis.call('HSET', jk, 'state', 'failed', 'finished_at', now, 'error', err)
      redis.call('HINCRBY', KEYS[7], 'failed', 1)
      emit(KEYS[6], ARGV[2], id, 'failed', 'error', err)
    else
      redis.call('ZADD', KEYS[5], now, id)
      redis.call('HSET', jk, 'state', 'cancelled', 'finished_at', now)
      redis.call('HINCRBY', KEYS[7], 'cancelled', 1)
      emit(KEYS[6], ARGV[2], id, 'cancelled')
    end
    applied[n] = 1
  end
end
return applied
