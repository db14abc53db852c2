-- Enqueue a new job, idempotently by id.
-- KEYS: 1 job hash, 2 pending list, 3 queued-at zset, 4 wake list, 5 events stream
-- ARGV: 1 job id, 2 tier, 3 spec JSON, 4 priority, 5 max attempts, 6 batch key, 7 meta JSON,
--       8 job key prefix, 9 events maxlen
-- Returns {1, 'queued'} or {0, <current state>} when the id exists already.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HGET', KEYS[1], 'state')}
end
local now = now_ms()
local id, tier, priority = ARGV[1], ARGV[2], tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'id', id, 'tier', tier, 'state', 'queued', 'spec', ARGV[3],
  'priority', priority, 'attempts', 0, 'max_attempts', ARGV[5], 'claims', 0,
  'batch_key', ARGV[6], 'meta', ARGV[7], 'enqueued_at', now, 'cancel_requested', 0)

-- Priority 0 (the common case) appends in O(1); a higher priority is inserted before the
-- first job of lower priority, scanning only the run of higher-or-equal ones at the head.
local inserted = false
if priority > 0 then
  local start = 0
  while not inserted do
    local chunk = redis.call('LRANGE', KEYS[2], start, start + 99)
    if #chunk == 0 then break end
    for _, other in ipairs(chunk) do
      local p = tonumber(redis.call('HGET', ARGV[8] .. other, 'priority') or '0')
      if p < priority then
        redis.call('LINSERT', KEYS[2], 'BEFORE', other, id)
        inserted = true
        break
      end
    end
    start = start + 100
  end
end
if not inserted then redis.call('RPUSH', KEYS[2], id) end
redis.call('ZADD', KEYS[3], now, id)
redis.call('RPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], -1000, -1)
emit(KEYS[5], ARGV[9], 'queued', id, tier, now, {'meta', ARGV[7]})
return {1, 'queued'}
