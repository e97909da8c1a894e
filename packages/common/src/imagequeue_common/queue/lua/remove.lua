-- remove: delete a job that is not running (waiting, delayed or finished): its hash, payload,
-- state-set entry and search index entries. An active job must be cancelled first.
-- KEYS[1] waiting  KEYS[2] delayed  KEYS[3] completed  KEYS[4] failed  KEYS[5] cancelled
-- KEYS[6] events  KEYS[7] users (unfinished jobs per user)
-- ARGV[1] key prefix  ARGV[2] events maxlen  ARGV[3] job id
-- Returns 'removed', 'missing', or 'active' (nothing changed then).
local id = ARGV[3]
local jk = job_key(ARGV[1], id)
local f = redis.call('HMGET', jk, 'state', 'user', 'ref', 'dedup')
local state = f[1]
if not state then
  return 'missing'
end
local sets = {waiting = KEYS[1], delayed = KEYS[2], completed = KEYS[3], failed = KEYS[4],
  cancelled = KEYS[5], expired = ARGV[1] .. 'expired'}
if not sets[state] then
  return state
end
if state == 'waiting' then
  leave_waiting(ARGV[1], KEYS[1], id, f[2])
else
  redis.call('ZREM', sets[state], id)
end
redis.call('ZREM', ARGV[1] .. 'deadlines', id)
forget_dedup(ARGV[1], id, f[4])
redis.call('DEL', jk, data_key(ARGV[1], id))
unindex(ARGV[1], id, f[2], f[3])
if state == 'waiting' or state == 'delayed' then
  user_pending(KEYS[7], f[2], -1)
end
emit(KEYS[6], ARGV[2], id, 'removed', 'state', state)
return 'removed'
