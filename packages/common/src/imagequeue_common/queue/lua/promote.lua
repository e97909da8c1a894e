-- promote: a delayed job goes to waiting now, behind the jobs already waiting at its priority
-- (a new arrival sequence), and a worker is woken for it.
-- KEYS[1] waiting  KEYS[2] delayed  KEYS[3] events  KEYS[4] marker  KEYS[5] meta
-- ARGV[1] key prefix  ARGV[2] events maxlen  ARGV[3] job id
-- Returns 'promoted', 'missing', or the state that forbids it (nothing changed then).
local id = ARGV[3]
local jk = job_key(ARGV[1], id)
local f = redis.call('HMGET', jk, 'state', 'priority')
if not f[1] then
  return 'missing'
end
if f[1] ~= 'delayed' then
  return f[1]
end
local seq = redis.call('HINCRBY', KEYS[5], 'seq', 1)
redis.call('ZREM', KEYS[2], id)
redis.call('ZADD', KEYS[1], waiting_score(f[2], seq), id)
redis.call('HSET', jk, 'state', 'waiting', 'seq', seq)
redis.call('HDEL', jk, 'due_at')
wake(KEYS[4])
emit(KEYS[3], ARGV[2], id, 'waiting', 'promoted', '1')
return 'promoted'
