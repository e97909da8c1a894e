-- Shared helpers, prepended to every script of the engine when it is loaded.
-- Time comes from the Redis server (TIME), never from clients, so leases, delays and the
-- rate-limit window agree across hosts whose clocks disagree.

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function now_ms()
  return math.floor(now_us() / 1000)
end

-- Waiting order: priority rank first, then arrival sequence (FIFO inside a priority).
-- 1e13 sequence numbers per rank keep every score an exact integer in a double.
local function waiting_score(rank, seq)
  return tonumber(rank) * 1e13 + tonumber(seq)
end

-- Append one event to the queue's capped stream.
local function emit(events, maxlen, job_id, event, ...)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'job', job_id, 'event', event, ...)
end

-- Wake one worker blocked on the marker list; the list is capped so that tokens pushed
-- while nobody waits cannot pile up.
local function wake(marker)
  redis.call('LPUSH', marker, '1')
  redis.call('LTRIM', marker, 0, 63)
end
