-- clean: delete finished jobs past retention, oldest first, at most ARGV[5] per set per call,
-- with their search index entries.
-- KEYS[1] completed  KEYS[2] failed  KEYS[3] cancelled  KEYS[4] expired  KEYS[5] events
-- KEYS[6] workers
-- ARGV[1] key prefix  ARGV[2] keep completed ms  ARGV[3] keep failed ms
-- ARGV[4] keep cancelled (and expired) ms  ARGV[5] batch size
-- Returns {completed removed, failed removed, cancelled removed, expired removed}.
local now = now_ms()
local removed = {}
for k = 1, 4 do
  local cutoff = now - tonumber(ARGV[math.min(k, 3) + 1])
  local ids = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[5]))
  for _, id in ipairs(ids) do
    local jk = job_key(ARGV[1], id)
    local f = redis.call('HMGET', jk, 'user', 'ref')
    unindex(ARGV[1], id, f[1], f[2])
    redis.call('DEL', jk, data_key(ARGV[1], id))
  end
  if #ids > 0 then
    redis.call('ZREM', KEYS[k], unpack(ids))
  end
  removed[k] = #ids
end
-- Events older than the longest retention serve nobody.
local oldest = now - math.max(tonumber(ARGV[2]), tonumber(ARGV[3]))
redis.call('XTRIM', KEYS[5], 'MINID', '~', oldest)
return removed
