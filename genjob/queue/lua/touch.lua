-- Heartbeat or progress report of a claimed job: extends its lease.
-- KEYS: 1 job hash, 2 in-flight zset, 3 events stream, 4 workers zset,
--       5.. per-tier workers zsets (the job's tier and every tier the worker claims from)
-- ARGV: 1 job id, 2 lease token, 3 lease ms, 4 worker id, 5 step ('' for a plain heartbeat),
--       6 total steps, 7 events maxlen, 8 latest checkpoint reference ('' = unchanged),
--       9 the checkpoint's step
-- Returns {1, cancel_requested} while the lease is held, else {0, state}.
local f = redis.call('HMGET', KEYS[1], 'state', 'lease', 'cancel_requested', 'tier', 'meta')
if f[1] ~= 'running' or f[2] ~= ARGV[2] then return {0, f[1] or 'missing'} end
local now = now_ms()
redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[3]), ARGV[1])
redis.call('ZADD', KEYS[4], now, ARGV[4])
for i = 5, #KEYS do redis.call('ZADD', KEYS[i], now, ARGV[4]) end
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[1], 'checkpoint', ARGV[8], 'checkpoint_step', ARGV[9])
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'progress_step', ARGV[5], 'progress_total', ARGV[6])
  emit(KEYS[3], ARGV[7], 'progress', ARGV[1], f[4], now,
    {'step', ARGV[5], 'total', ARGV[6], 'meta', f[5] or ''})
end
return {1, tonumber(f[3])}
