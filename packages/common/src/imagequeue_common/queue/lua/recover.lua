-- recover: return jobs whose lease expired (their worker died or hung) to waiting at their old
-- place, or dead-letter them once they stalled more than ARGV[2] times.
-- KEYS[1] active  KEYS[2] waiting  KEYS[3] failed  KEYS[4] events  KEYS[5] marker  KEYS[6] metrics
-- KEYS[7] users (unfinished jobs per user)
-- ARGV[1] key prefix  ARGV[2] stall limit  ARGV[3] events maxlen  ARGV[4] batch size
-- ARGV[5] most active jobs per user (0: any)
-- Returns {ids returned to waiting, ids dead-lettered}. Jobs past their deadline to start
-- expire here too, so they do even while no worker claims.
local now = now_ms()
expire_due(ARGV[1], ARGV[3], now, tonumber(ARGV[4]))
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local requeued, dead = {}, {}
for _, id in ipairs(expired) do
  local jk = job_key(ARGV[1], id)
  redis.call('ZREM', KEYS[1], id)
  local user = redis.call('HGET', jk, 'user')
  user_slots_freed(ARGV[1], KEYS[2], KEYS[5], user, tonumber(ARGV[5]), 1)
  local stalls = redis.call('HINCRBY', jk, 'stalls', 1)
  -- A stalled run never finished, so it does not use up one of the job's retries.
  redis.call('HINCRBY', jk, 'attempts', -1)
  redis.call('HINCRBY', KEYS[6], 'stalled', 1)
  emit(KEYS[4], ARGV[3], id, 'stalled', 'stalls', stalls)
  if stalls > tonumber(ARGV[2]) then
    local err = 'job stalled ' .. stalls .. ' times (its worker stopped renewing the lease)'
    redis.call('ZADD', KEYS[3], now, id)
    redis.call('HSET', jk, 'state', 'failed', 'finished_at', now, 'error', err, 'error_detail', '')
    redis.call('HINCRBY', KEYS[6], 'failed', 1)
    count_minute(ARGV[1], now, 0, 1)
    user_pending(KEYS[7], user, -1)
    forget_dedup(ARGV[1], id, redis.call('HGET', jk, 'dedup'))
    emit(KEYS[4], ARGV[3], id, 'failed', 'error', err)
    dead[#dead + 1] = id
  else
    return_waiting(ARGV[1], KEYS[2], id, user)
    emit(KEYS[4], ARGV[3], id, 'waiting')
    wake(KEYS[5])
    requeued[#requeued + 1] = id
  end
end
return {requeued, dead}
