-- Enqueue a new job, idempotently by id.
-- KEYS: 1 job hash, 2 pending list, 3 queued-at zset, 4 wake list, 5 events stream,
--       6 (optional) a set indexing the job while it is unfinished (the operator's quota count)
-- ARGV: 1 job id, 2 tier, 3 spec JSON, 4 priority, 5 max attempts, 6 batch key, 7 meta JSON,
--       8 job key prefix, 9 events maxlen
-- Returns {1, 'queued', now} or {0, <current state>, now} when the id exists already.
local result = enqueue_job(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], unpack(ARGV, 1, 9))
if KEYS[6] and not FINAL[result[2]] then redis.call('SADD', KEYS[6], ARGV[1]) end
return result
