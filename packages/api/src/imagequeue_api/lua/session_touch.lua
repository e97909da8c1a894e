-- session_touch: a dashboard session's fields, its idle expiry renewed; nothing once it is
-- gone or past its lifetime (then it is deleted at once, not left to its idle expiry).
-- KEYS[1] the session's hash  ARGV[1] idle ms
-- Returns HGETALL's flat list of fields and values, or an empty list.
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
  return fields
end
local ends = nil
for i = 1, #fields, 2 do
  if fields[i] == 'ends_ms' then
    ends = tonumber(fields[i + 1])
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ends == nil or now >= ends then
  redis.call('DEL', KEYS[1])
  return {}
end
redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[1]), ends - now))
return fields
