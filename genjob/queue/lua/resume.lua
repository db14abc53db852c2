-- A worker that claimed a job with a checkpoint says what it did with it: resumed from the
-- checkpoint's step, or refused it (another model or version, corrupt, spec changed) and
-- started over from step 0. Fenced by the lease, like a heartbeat.
-- KEYS: 1 job hash, 2 events stream
-- ARGV: 1 job id, 2 lease token, 3 step resumed from ('' when the checkpoint was refused),
--       4 total steps, 5 message (why it was refused), 6 events maxlen
-- Returns {1, 'resumed'|'refused'} or {0, current state}.
local f = redis.call('HMGET', KEYS[1], 'state', 'lease', 'tier', 'meta')
if f[1] ~= 'running' or f[2] ~= ARGV[2] then return {0, f[1] or 'missing'} end
local now = now_ms()
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], 'checkpoint', 'checkpoint_step')
  redis.call('HSET', KEYS[1], 'resumed_from_step', 0)
  emit(KEYS[2], ARGV[6], 'warning', ARGV[1], f[3], now,
    {'reason', 'CheckpointRefused', 'message', ARGV[5], 'meta', f[4] or ''})
  return {1, 'refused'}
end
redis.call('HSET', KEYS[1], 'resumed_from_step', ARGV[3])
local saved = redis.call('HINCRBY', KEYS[1], 'steps_saved', tonumber(ARGV[3]))
emit(KEYS[2], ARGV[6], 'resumed', ARGV[1], f[3], now,
  {'step', ARGV[3], 'total', ARGV[4], 'steps_saved', saved, 'meta', f[4] or ''})
return {1, 'resumed'}
