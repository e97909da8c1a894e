-- idem_finish: the holder of an Idempotency-Key ends its work: store the answer (complete)
-- or drop the record so a retry may proceed (abandon). Only the holder named by the token
-- may: one whose lock expired and was taken over must not overwrite the new holder's work.
-- KEYS[1] the record  ARGV[1] holder's token  ARGV[2] answer ('' = abandon)  ARGV[3] keep ms
-- Returns 1 if applied, 0 if the caller no longer held the key.
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 'answer', ARGV[2])
redis.call('HDEL', KEYS[1], 'owner')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
