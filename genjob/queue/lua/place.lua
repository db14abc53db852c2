-- A job's place in line, for status reads: priority jobs first (their rank, O(log n)), then
-- the pending list (LPOS, O(N) in the list's length).
-- KEYS: 1 the tier's pending list (its priority set is by_priority of it), 2 the tier's workers zset
-- ARGV: 1 job id, 2 worker window ms
-- Returns {0-based position or -1 (not waiting), jobs waiting in the tier, the tier's active workers}.
local ranked = by_priority(KEYS[1])
local ahead = redis.call('ZCARD', ranked)
local position = redis.call('ZRANK', ranked, ARGV[1])
if not position then
  position = redis.call('LPOS', KEYS[1], ARGV[1])
  if position then position = position + ahead end
end
return {position or -1, redis.call('LLEN', KEYS[1]) + ahead, active_workers(KEYS[2], now_ms(), ARGV[2])}
