-- session_end_many: end every dashboard session of one user, or every session.
-- KEYS[1] the index (zset of session digests)
-- ARGV[1] prefix of session hashes (<prefix><digest>, under the same hash tag as KEYS[1])
-- ARGV[2] the user, or '' for everyone
-- Returns how many live sessions were ended (index entries of expired ones are dropped too).
local ended = 0
for _, digest in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. digest
  local user = redis.call('HGET', key, 'user')
  if ARGV[2] == '' or user == ARGV[2] or not user then
    ended = ended + redis.call('DEL', key)
    redis.call('ZREM', KEYS[1], digest)
  end
end
return ended
