-- finish: end a batch of leased runs. Each op applies only while the job is still active under
-- the caller's lease token; a run whose lease was lost (recovered as stalled) changes nothing.
-- KEYS[1] active  KEYS[2] completed  KEYS[3] failed  KEYS[4] delayed  KEYS[5] cancelled
-- KEYS[6] events  KEYS[7] metrics  KEYS[8] marker  KEYS[9] users (unfinished jobs per user)
-- KEYS[10] waiting (a user's parked jobs return to it when a run of theirs ends)
-- ARGV[1] key prefix  ARGV[2] events maxlen  ARGV[3] most active jobs per user (0: any)
-- ARGV[4] number of ops, then 6 values per op:
--   job id, lease token, kind ('completed' | 'retry' | 'failed' | 'cancelled'),
--   value (result JSON | retry delay ms | ''), error (what users see, '' for none),
--   error detail (where it was raised, a dead letter's traceback: for operators only)
-- Returns a string with one character per op: '1' applied, '0' lease lost.
local K = {active = KEYS[1], completed = KEYS[2], failed = KEYS[3], delayed = KEYS[4],
  cancelled = KEYS[5], events = KEYS[6], metrics = KEYS[7], marker = KEYS[8], users = KEYS[9],
  waiting = KEYS[10], cap = tonumber(ARGV[3])}
return finish_ops(K, ARGV[1], ARGV[2], tonumber(ARGV[4]), 5)
