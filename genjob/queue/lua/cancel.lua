-- Cancel a job by id: a waiting job leaves its queue now; a running one gets a flag its
-- worker sees at the next step (the worker then finishes it as 'cancelled').
-- KEYS: 1 job hash, 2 pending list, 3 queued-at zset, 4 delayed zset, 5 events stream,
--       6 orphaned-checkpoints set (a waiting job's checkpoint is left for the workers to delete)
-- ARGV: 1 job id, 2 message, 3 retention s, 4 events maxlen
-- Returns {1, 'cancelled'|'cancel_requested'} or {0, 'not_found'|<final state>}.
local f = redis.call('HMGET', KEYS[1], 'state', 'tier', 'meta')
local state = f[1]
if not state then return {0, 'not_found'} end
local now = now_ms()
if state == 'queued' or state == 'delayed' then
  redis.call('LREM', KEYS[2], 1, ARGV[1])
  redis.call('ZREM', by_priority(KEYS[2]), ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  orphan_checkpoint(KEYS[1], KEYS[6], ARGV[1])
  cancel_job(KEYS[1], KEYS[5], ARGV[4], ARGV[1], f[2], f[3], ARGV[2], ARGV[3], now)
  return {1, 'cancelled'}
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', 1)
  emit(KEYS[5], ARGV[4], 'cancel_requested', ARGV[1], f[2], now, {'meta', f[3] or ''})
  return {1, 'cancel_requested'}
end
return {0, state}
