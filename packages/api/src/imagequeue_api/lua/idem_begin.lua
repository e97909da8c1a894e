-- idem_begin: claim an Idempotency-Key, or report what became of it.
-- A record is a hash: fp (SHA-256 of the request body), owner (the holder's token, while
-- the work runs), answer (the stored response, once done). While it runs, the whole record
-- lives only for the lock time: a holder that dies lets it expire, and the next request
-- takes the key over. Done, it lives for the retention time.
-- KEYS[1] the record  ARGV[1] body fingerprint  ARGV[2] caller's token  ARGV[3] lock ms
-- Returns {'proceed'}, {'replay', answer}, {'mismatch'} or {'busy'} (another holds it).
local cur = redis.call('HMGET', KEYS[1], 'fp', 'answer')
if not cur[1] then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'owner', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'proceed'}
end
if cur[1] ~= ARGV[1] then
  return {'mismatch'}
end
if cur[2] then
  return {'replay', cur[2]}
end
return {'busy'}
