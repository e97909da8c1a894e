-- login_attempt: may this dashboard login be tried now? Counted before the password is
-- checked, so concurrent tries cannot slip past the limit between a check and a count: at
-- most ARGV[1] tries per username and ARGV[2] per address get their password checked per
-- window. A counter that reaches its limit lives on for the lockout time: while it does,
-- every try is refused without a look at the password. A correct password takes its try
-- back (login_succeeded).
-- KEYS[1] the username's counter  KEYS[2] the address's counter
-- ARGV[1] tries per username  ARGV[2] tries per address  ARGV[3] window ms  ARGV[4] lockout ms
-- Returns {refused ms, 0} when locked (ms until the later lock ends), else
-- {0, lockout ms if this try was the last one allowed (a wrong password locks), else 0}.
local limits = {tonumber(ARGV[1]), tonumber(ARGV[2])}
local lockout = tonumber(ARGV[4])
local refused = 0
for i = 1, 2 do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count >= limits[i] then
    local left = redis.call('PTTL', KEYS[i])
    refused = math.max(refused, left > 0 and left or lockout)
  end
end
if refused > 0 then
  return {refused, 0}
end
local last = 0
for i = 1, 2 do
  local count = redis.call('INCR', KEYS[i])
  if count >= limits[i] then
    redis.call('PEXPIRE', KEYS[i], lockout)
    last = lockout
  elseif count == 1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
  end
end
return {0, last}
