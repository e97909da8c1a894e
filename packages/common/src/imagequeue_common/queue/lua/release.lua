-- release: a worker that shuts down gives back jobs it claimed but will not finish. They return
-- to waiting at their old place; the unfinished run does not count as an attempt.
-- KEYS[1] active  KEYS[2] waiting  KEYS[3] events  KEYS[4] marker
-- ARGV[1] key prefix  ARGV[2] events maxlen  ARGV[3] most active jobs per user (0: any)
-- ARGV[4..] pairs of job id, lease token
-- Returns the number of jobs released.
local released = 0
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local jk = job_key(ARGV[1], id)
  local cur = redis.call('HMGET', jk, 'state', 'token', 'user', 'start_by')
  if cur[1] == 'active' and cur[2] == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    user_slots_freed(ARGV[1], KEYS[2], KEYS[4], cur[3], tonumber(ARGV[3]), 1)
    return_waiting(ARGV[1], KEYS[2], id, cur[3])
    local runs = redis.call('HINCRBY', jk, 'attempts', -1)
    if cur[4] and runs == 0 then  -- it never ran: its deadline to start holds again
      redis.call('ZADD', ARGV[1] .. 'deadlines', tonumber(cur[4]), id)
    end
    emit(KEYS[3], ARGV[2], id, 'waiting', 'released', '1')
    released = released + 1
  end
end
if released > 0 then
  wake(KEYS[4])
end
return released
