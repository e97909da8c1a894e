-- promote: a delayed job goes to waiting now, as the newest job of its user at its priority,
-- and a worker is woken for it.
-- KEYS[1] waiting  KEYS[2] delayed  KEYS[3] events  KEYS[4] marker  KEYS[5] meta
-- ARGV[1] key prefix  ARGV[2] events maxlen  ARGV[3] job id  ARGV[4] fairness policy
-- Returns 'promoted', 'missing', or the state that forbids it (nothing changed then).
local id = ARGV[3]
local jk = job_key(ARGV[1], id)
local f = redis.call('HMGET', jk, 'state', 'priority', 'user')
if not f[1] then
  return 'missing'
end
if f[1] ~= 'delayed' then
  return f[1]
end
redis.call('ZREM', KEYS[2], id)
enter_waiting(ARGV[1], parse_policy(ARGV[4]), KEYS[1], id, f[2], f[3])
redis.call('HDEL', jk, 'due_at')
wake(KEYS[4])
emit(KEYS[3], ARGV[2], id, 'waiting', 'promoted', '1')
return 'promoted'
