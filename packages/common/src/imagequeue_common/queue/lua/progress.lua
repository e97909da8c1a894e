-- progress: record a running job's progress and publish it.
-- KEYS[1] events
-- ARGV[1] key prefix  ARGV[2] events maxlen  ARGV[3] job id  ARGV[4] lease token
-- ARGV[5] percent (0-100)  ARGV[6] message ('' for none)
-- Returns 1 when the job should go on, 0 when its cancellation was requested,
-- -1 when the caller no longer holds the job's lease.
local jk = job_key(ARGV[1], ARGV[3])
local cur = redis.call('HMGET', jk, 'state', 'token', 'cancel')
if cur[1] ~= 'active' or cur[2] ~= ARGV[4] then
  return -1
end
redis.call('HSET', jk, 'progress', ARGV[5], 'progress_msg', ARGV[6])
emit(KEYS[1], ARGV[2], ARGV[3], 'progress', 'progress', ARGV[5], 'msg', ARGV[6])
if cur[3] == '1' then
  return 0
end
return 1
