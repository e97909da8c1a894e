-- release: a worker that shuts down gives back jobs it claimed but will not finish. They return
-- to waiting at their old place; the unfinished run does not count as an attempt.
-- KEYS[1] active  KEYS[2] waiting  KEYS[3] events  KEYS[4] marker
-- ARGV[1] key prefix  ARGV[2] events maxlen  ARGV[3..] pairs of job id, lease token
-- Returns the number of jobs released.
local released = 0
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local jk = job_key(ARGV[1], id)
  local cur = redis.call('HMGET', jk, 'state', 'token', 'priority', 'seq')
  if cur[1] == 'active' and cur[2] == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], waiting_score(cur[3], cur[4]), id)
    redis.call('HSET', jk, 'state', 'waiting')
    redis.call('HINCRBY', jk, 'attempts', -1)
    emit(KEYS[3], ARGV[2], id, 'waiting', 'released', '1')
    released = released + 1
  end
end
if released > 0 then
  wake(KEYS[4])
end
return released
