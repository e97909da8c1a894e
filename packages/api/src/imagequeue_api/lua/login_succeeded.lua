-- login_succeeded: a correct password. The username's failures are forgiven; the address
-- only gets back the try login_attempt counted (its other failures stand).
-- KEYS[1] the username's counter  KEYS[2] the address's counter
-- Returns 1.
redis.call('DEL', KEYS[1])
local count = tonumber(redis.call('GET', KEYS[2]) or '0')
if count > 1 then
  redis.call('DECR', KEYS[2])
elseif count == 1 then
  redis.call('DEL', KEYS[2])
end
return 1
