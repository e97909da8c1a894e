-- extend: a live worker's heartbeat. Renews the leases it still holds and records the worker.
-- KEYS[1] active  KEYS[2] workers (zset: worker id -> last beat ms)  KEYS[3] this worker's hash
-- ARGV[1] key prefix  ARGV[2] lease ms  ARGV[3] worker id  ARGV[4] worker info (JSON)
-- ARGV[5..] pairs of job id, lease token
-- Returns {lost ids, ids whose cancellation was requested}.
local now = now_ms()
local lease = tonumber(ARGV[2])
local lost, cancel = {}, {}
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  local cur = redis.call('HMGET', job_key(ARGV[1], id), 'state', 'token', 'cancel')
  if cur[1] == 'active' and cur[2] == ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], 'XX', now + lease, id)
    if cur[3] == '1' then
      cancel[#cancel + 1] = id
    end
  else
    lost[#lost + 1] = id
  end
end
redis.call('ZADD', KEYS[2], now, ARGV[3])
redis.call('HSET', KEYS[3], 'info', ARGV[4], 'beat', now)
redis.call('PEXPIRE', KEYS[3], lease * 3)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - lease * 3)
return {lost, cancel}
