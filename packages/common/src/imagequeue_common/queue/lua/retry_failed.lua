-- retry_failed: move dead-lettered jobs back to waiting with their attempts reset.
-- KEYS[1] failed  KEYS[2] waiting  KEYS[3] events  KEYS[4] marker  KEYS[5] meta
-- KEYS[6] users (unfinished jobs per user)
-- ARGV[1] key prefix  ARGV[2] events maxlen  ARGV[3] job id, or '' for the oldest ARGV[4]
-- ARGV[5] fairness policy (see _lib.lua)
-- Returns {jobs moved, why not ('' when moved; for one id: 'missing' or the job's state)}.
local ids
if ARGV[3] ~= '' then
  local state = redis.call('HGET', job_key(ARGV[1], ARGV[3]), 'state')
  if not state then
    return {0, 'missing'}
  end
  if state ~= 'failed' then
    return {0, state}
  end
  ids = {ARGV[3]}
else
  ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[4]) - 1)
end
local policy = parse_policy(ARGV[5])
for _, id in ipairs(ids) do
  local jk = job_key(ARGV[1], id)
  local f = redis.call('HMGET', jk, 'priority', 'user', 'dedup')
  redis.call('ZREM', KEYS[1], id)
  -- Unfinished again, it is its key's job once more, unless another took the key meanwhile.
  if f[3] and f[3] ~= '' then
    redis.call('HSETNX', ARGV[1] .. 'dedup', f[3], id)
  end
  enter_waiting(ARGV[1], policy, KEYS[2], id, f[1], f[2])
  redis.call('HSET', jk, 'attempts', 0, 'stalls', 0, 'progress', 0)
  redis.call('HDEL', jk, 'finished_at', 'cancel', 'result')
  user_pending(KEYS[6], f[2], 1)
  emit(KEYS[3], ARGV[2], id, 'waiting', 'retried_by_hand', '1')
end
if #ids > 0 then
  wake(KEYS[4])
end
return {#ids, ''}
