-- The gateway's submit (local mode) in one round trip: count the API key's request against
-- its rate limit, enqueue (as the queue's enqueue.lua, with the prelude's enqueue_job),
-- index the job under its tenant (the gateway's listing), and answer what the 202 needs.
-- KEYS: 1-5 as enqueue.lua, 6 the tier's workers zset, 7 the tenant's job index, 8 the key's rate counter
-- ARGV: 1-9 as enqueue.lua, 10 requests allowed in this window (0: do not count),
--       11 counter TTL seconds, 12 worker liveness window ms, 13 index retention ms
-- Returns {0, count} when over the limit (nothing queued), else
-- {1, count, created, state, 0-based position or -1 (claimed already), the tier's active workers, now}.
local limit, count = tonumber(ARGV[10]), 0
if limit > 0 then
  count = count_request(KEYS[8], ARGV[11])
  if count > limit then return {0, count} end
end
local id = ARGV[1]
local result = enqueue_job(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], unpack(ARGV, 1, 9))
local now = result[3]
-- A priority job's place is its rank among the priority jobs (O(log n)); a priority-0 job was
-- appended to the list, behind every priority job: search the list from its tail (O(1)).
local ranked = by_priority(KEYS[2])
local position = redis.call('ZRANK', ranked, id)
if not position then
  position = redis.call('LPOS', KEYS[2], id, 'RANK', -1)
  if position then position = position + redis.call('ZCARD', ranked) end
end
local workers = active_workers(KEYS[6], now, ARGV[12])
redis.call('ZADD', KEYS[7], 'NX', now, id)
-- Entries older than the job records' retention point at expired jobs.
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - tonumber(ARGV[13]))
return {1, count, result[1], result[2], position or -1, workers, now}
