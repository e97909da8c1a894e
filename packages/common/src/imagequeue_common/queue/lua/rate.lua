-- rate: how much of the global rate limit the current sliding window uses (read-only: the
-- window is counted by score, the log is trimmed only by claim).
-- KEYS[1] limiter (zset of claim start times, us)
-- ARGV[1] window ms
-- Returns the number of starts inside (now - window, now].
local window_us = tonumber(ARGV[1]) * 1000
-- string.format, not '..': Lua prints a number with 14 digits, and times in us have 16.
return redis.call('ZCOUNT', KEYS[1], string.format('(%d', now_us() - window_us), '+inf')
