-- Give a claimed job back (preemption, e.g. SIGTERM on a Spot node): it goes to the head of
-- its pending list and the attempt is not counted. A job whose cancel was asked while it ran
-- is cancelled instead (a cancel wins over running again).
-- KEYS: 1 job hash, 2 in-flight zset, 3 pending list, 4 queued-at zset, 5 wake list, 6 events stream
-- ARGV: 1 job id, 2 lease token, 3 reason, 4 message, 5 gpu seconds, 6 events maxlen,
--       7 retention s (of a cancelled record), 8 checkpoint reference ('' = keep the current one),
--       9 the checkpoint's step
-- Returns {1, 'queued'|'cancelled'} or {0, 'stale', current state}.
local f = redis.call('HMGET', KEYS[1], 'state', 'lease', 'tier', 'meta', 'cancel_requested')
if f[1] ~= 'running' or f[2] ~= ARGV[2] then return {0, 'stale', f[1] or 'missing'} end
local now = now_ms()
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBYFLOAT', KEYS[1], 'gpu_seconds', ARGV[5])
if f[5] == '1' then
  cancel_job(KEYS[1], KEYS[6], ARGV[6], ARGV[1], f[3], f[4], 'cancelled while running', ARGV[7], now)
  return {1, 'cancelled'}
end
redis.call('HSET', KEYS[1], 'state', 'queued', 'reason', ARGV[3], 'message', ARGV[4])
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[1], 'checkpoint', ARGV[8], 'checkpoint_step', ARGV[9])
end
push_head(KEYS[3], KEYS[4], KEYS[5], KEYS[1], ARGV[1])
emit(KEYS[6], ARGV[6], 'requeued', ARGV[1], f[3], now,
  {'reason', ARGV[3], 'message', ARGV[4], 'checkpoint_step', redis.call('HGET', KEYS[1], 'checkpoint_step') or '',
   'meta', f[4] or ''})
return {1, 'queued'}
