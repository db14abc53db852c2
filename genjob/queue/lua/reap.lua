-- Maintenance of one tier: requeue jobs whose lease expired (their worker is gone) with
-- attempts+1, dead-letter them past max attempts (reason WorkerLost), cancel them if a cancel
-- was asked while they ran, and make due retries
-- claimable (so KEDA sees them as pending even while the pool is at zero).
-- KEYS: 1 in-flight zset, 2 pending list, 3 queued-at zset, 4 delayed zset, 5 wake list,
--       6 dead list, 7 events stream, 8 orphaned-checkpoints set (the checkpoints of jobs
--       cancelled or dead-lettered here are left for the workers to delete)
-- ARGV: 1 job key prefix, 2 max jobs per call, 3 retention s, 4 dead-letter max, 5 events maxlen
-- Returns {requeued, dead-lettered, promoted, cancelled}.
local prefix, limit, maxlen = ARGV[1], tonumber(ARGV[2]), ARGV[5]
local now = now_ms()
local requeued, dead, promoted, cancelled = 0, 0, 0, 0
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(expired) do
  local key = prefix .. id
  redis.call('ZREM', KEYS[1], id)
  local f = redis.call('HMGET', key, 'state', 'tier', 'max_attempts', 'worker', 'meta', 'cancel_requested')
  if f[1] == 'running' and f[6] == '1' then
    orphan_checkpoint(key, KEYS[8], id)
    cancel_job(key, KEYS[7], maxlen, id, f[2], f[5], 'cancelled while running (its worker was lost)', ARGV[3], now)
    cancelled = cancelled + 1
  elseif f[1] == 'running' then
    local attempts = redis.call('HINCRBY', key, 'attempts', 1)
    local msg = 'lease of worker ' .. (f[4] or '?') .. ' expired (attempt ' .. attempts .. ')'
    if attempts >= tonumber(f[3]) then
      orphan_checkpoint(key, KEYS[8], id)
      redis.call('HSET', key, 'state', 'failed', 'reason', 'WorkerLost', 'message', msg, 'finished_at', now)
      redis.call('LPUSH', KEYS[6], id)
      redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[4]) - 1)
      redis.call('EXPIRE', key, ARGV[3])
      emit(KEYS[7], maxlen, 'failed', id, f[2], now,
        {'reason', 'WorkerLost', 'message', msg, 'attempt', attempts, 'meta', f[5] or ''})
      dead = dead + 1
    else
      redis.call('HSET', key, 'state', 'queued', 'reason', 'WorkerLost', 'message', msg)
      push_head(KEYS[2], KEYS[3], KEYS[5], key, id)
      emit(KEYS[7], maxlen, 'requeued', id, f[2], now,
        {'reason', 'WorkerLost', 'message', msg, 'attempt', attempts, 'meta', f[5] or ''})
      requeued = requeued + 1
    end
  end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[4], id)
  redis.call('HSET', prefix .. id, 'state', 'queued')
  push_head(KEYS[2], KEYS[3], KEYS[5], prefix .. id, id)
  promoted = promoted + 1
end
return {requeued, dead, promoted, cancelled}
