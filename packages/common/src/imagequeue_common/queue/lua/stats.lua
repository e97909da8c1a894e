-- stats: one consistent snapshot of the count of jobs in every state.
-- KEYS[1] waiting  KEYS[2] active  KEYS[3] completed  KEYS[4] failed  KEYS[5] delayed
-- KEYS[6] cancelled  KEYS[7] meta  KEYS[8] waiting jobs per user  KEYS[9] running jobs per user
-- KEYS[10] expired
-- Returns {waiting, active, completed, failed, delayed, cancelled, paused (0|1), users
-- waiting, users running, expired}.
local out = {}
for k = 1, 6 do
  out[k] = redis.call('ZCARD', KEYS[k])
end
out[7] = 0
if redis.call('HGET', KEYS[7], 'paused') == '1' then
  out[7] = 1
end
out[8] = redis.call('ZCARD', KEYS[8])
out[9] = redis.call('ZCARD', KEYS[9])
out[10] = redis.call('ZCARD', KEYS[10])
return out
