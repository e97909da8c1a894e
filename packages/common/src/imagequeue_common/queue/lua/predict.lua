-- predict: where a new job of user ARGV[3] at priority ARGV[2] would stand if it were
-- enqueued now (the tag enter_waiting would give it), without adding it: for admission.
-- KEYS[1] waiting  KEYS[2] delayed  KEYS[3] active  KEYS[4] meta
-- ARGV[1] key prefix  ARGV[2] priority  ARGV[3] user id  ARGV[4] fairness policy
-- ARGV[5] de-duplication key ('' for none)
-- Returns {jobs that would be claimed before it, jobs running, jobs waiting or delayed,
-- the id of the unfinished job already queued under the key (or ''), its tag's distance
-- from the virtual time}.
local prefix = ARGV[1]
local dup = ''
if ARGV[5] ~= '' then
  local other = redis.call('HGET', prefix .. 'dedup', ARGV[5])
  if other then
    local st = redis.call('HGET', job_key(prefix, other), 'state')
    if st == 'waiting' or st == 'delayed' or st == 'active' then
      dup = other
    end
  end
end
local policy = parse_policy(ARGV[4])
local priority = ARGV[2]
local tag, _, vt = next_tag(prefix, policy, priority, ARGV[3])
local score = turn_base(policy, priority, tag)
-- Every job of an earlier tag goes first, and those of the same tier already queued in
-- this turn (a lower sequence number).
local ahead = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. (score + TIES))
local queued = redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2])
return {ahead, redis.call('ZCARD', KEYS[3]), queued, dup, tag - vt}
