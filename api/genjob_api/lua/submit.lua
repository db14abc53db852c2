-- The gateway's submit (local mode) in one round trip: count the API key's request against
-- its rate limit, enqueue (as the queue's enqueue.lua, with the prelude's enqueue_job),
-- index the job under its tenant (the gateway's listing), and answer what the 202 needs.
-- KEYS: 1-5 as enqueue.lua, 6 the tier's workers zset, 7 the tenant's job index, 8 the key's rate counter,
--       9 the tenant's possibly-unfinished job ids (set)
-- ARGV: 1-9 as enqueue.lua, 10 requests allowed in this window (0: do not count),
--       11 counter TTL seconds, 12 worker liveness window ms, 13 index retention ms,
--       14 the tenant's cap of unfinished jobs (0: none)
-- Returns {0, count} when over the rate limit, {-1, count, unfinished} when the tenant is at
-- its cap (nothing queued in both cases), else
-- {1, count, created, state, 0-based position or -1 (claimed already), the tier's active workers, now}.
local limit, count = tonumber(ARGV[10]), 0
if limit > 0 then
  count = count_request(KEYS[8], ARGV[11])
  if count > limit then return {0, count} end
end
local id = ARGV[1]
local cap = tonumber(ARGV[14])
if cap > 0 and redis.call('EXISTS', KEYS[1]) == 0 and redis.call('SCARD', KEYS[9]) >= cap then
  -- At the cap: forget the finished (or expired) ones, then count again. O(cap), only here.
  for _, other in ipairs(redis.call('SMEMBERS', KEYS[9])) do
    local state = redis.call('HGET', ARGV[8] .. other, 'state')
    if not state or FINAL[state] then redis.call('SREM', KEYS[9], other) end
  end
  local unfinished = redis.call('SCARD', KEYS[9])
  if unfinished >= cap then return {-1, count, unfinished} end
end
local result = enqueue_job(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], unpack(ARGV, 1, 9))
if cap > 0 and result[1] == 1 then redis.call('SADD', KEYS[9], id) end
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
