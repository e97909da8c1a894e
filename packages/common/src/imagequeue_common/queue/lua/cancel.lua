-- cancel: a waiting or delayed job is cancelled now; an active one is marked, and its worker
-- stops it at the next progress point.
-- KEYS[1] waiting  KEYS[2] delayed  KEYS[3] cancelled  KEYS[4] events  KEYS[5] metrics
-- KEYS[6] users (unfinished jobs per user)
-- ARGV[1] key prefix  ARGV[2] events maxlen  ARGV[3] job id
-- Returns 'cancelled', 'requested', 'missing', or the state that forbids it.
local id = ARGV[3]
local jk = job_key(ARGV[1], id)
local state = redis.call('HGET', jk, 'state')
if not state then
  return 'missing'
end
if state == 'waiting' or state == 'delayed' then
  local f = redis.call('HMGET', jk, 'user', 'dedup')
  local user = f[1]
  redis.call('ZREM', ARGV[1] .. 'deadlines', id)
  forget_dedup(ARGV[1], id, f[2])
  if state == 'waiting' then
    leave_waiting(ARGV[1], KEYS[1], id, user)
  else
    redis.call('ZREM', KEYS[2], id)
  end
  local now = now_ms()
  redis.call('ZADD', KEYS[3], now, id)
  redis.call('HSET', jk, 'state', 'cancelled', 'finished_at', now)
  redis.call('HINCRBY', KEYS[5], 'cancelled', 1)
  user_pending(KEYS[6], user, -1)
  emit(KEYS[4], ARGV[2], id, 'cancelled')
  return 'cancelled'
end
if state == 'active' then
  redis.call('HSET', jk, 'cancel', '1')
  emit(KEYS[4], ARGV[2], id, 'cancel_requested')
  return 'requested'
end
return state
