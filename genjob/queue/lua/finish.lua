-- Finish a claimed job: succeeded, cancelled (the worker saw the flag), failed or retried.
-- A retry of a job whose cancel was asked while it ran cancels it instead.
-- KEYS: 1 job hash, 2 in-flight zset, 3 delayed zset, 4 dead list, 5 events stream
-- ARGV: 1 job id, 2 lease token, 3 outcome ('succeeded'|'cancelled'|'failed'),
--       4 reason, 5 message, 6 result JSON, 7 gpu seconds, 8 retryable (1|0),
--       9 backoff base ms, 10 backoff max ms, 11 retention s, 12 dead-letter max, 13 events maxlen
-- Returns {1, new state[, retry delay ms]} or {0, 'duplicate'|'stale', current state}.
local f = redis.call('HMGET', KEYS[1], 'state', 'lease', 'tier', 'attempts', 'max_attempts', 'meta', 'cancel_requested')
local id, lease, outcome = ARGV[1], ARGV[2], ARGV[3]
if not f[1] then return {0, 'stale', 'missing'} end
if f[2] == lease and f[1] == outcome then return {0, 'duplicate', f[1]} end
if f[1] ~= 'running' or f[2] ~= lease then return {0, 'stale', f[1]} end
local now = now_ms()
local tier, meta, maxlen = f[3], f[6] or '', ARGV[13]
redis.call('ZREM', KEYS[2], id)
local gpu = redis.call('HINCRBYFLOAT', KEYS[1], 'gpu_seconds', ARGV[7])
if outcome == 'succeeded' or outcome == 'cancelled' then
  local reason = outcome == 'succeeded' and 'Completed' or 'Cancelled'
  redis.call('HSET', KEYS[1], 'state', outcome, 'reason', reason, 'message', ARGV[5], 'result', ARGV[6],
    'finished_at', now)
  drop_inline_image(KEYS[1])
  redis.call('EXPIRE', KEYS[1], ARGV[11])
  emit(KEYS[5], maxlen, outcome, id, tier, now,
    {'reason', reason, 'result', ARGV[6], 'gpu_seconds', gpu, 'meta', meta})
  return {1, outcome}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if ARGV[8] == '1' and attempts < tonumber(f[5]) and f[7] == '1' then
  cancel_job(KEYS[1], KEYS[5], maxlen, id, tier, meta, 'cancelled while running (' .. ARGV[4] .. ': ' .. ARGV[5] .. ')', ARGV[11], now)
  return {1, 'cancelled'}
end
if ARGV[8] == '1' and attempts < tonumber(f[5]) then
  local delay = math.min(tonumber(ARGV[9]) * 2 ^ (attempts - 1), tonumber(ARGV[10]))
  delay = math.floor(delay)
  redis.call('HSET', KEYS[1], 'state', 'delayed', 'reason', ARGV[4], 'message', ARGV[5])
  redis.call('ZADD', KEYS[3], now + delay, id)
  emit(KEYS[5], maxlen, 'retrying', id, tier, now,
    {'reason', ARGV[4], 'message', ARGV[5], 'attempt', attempts, 'delay_ms', delay, 'meta', meta})
  return {1, 'delayed', delay}
end
redis.call('HSET', KEYS[1], 'state', 'failed', 'reason', ARGV[4], 'message', ARGV[5], 'finished_at', now)
redis.call('LPUSH', KEYS[4], id)
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[12]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[11])
emit(KEYS[5], maxlen, 'failed', id, tier, now,
  {'reason', ARGV[4], 'message', ARGV[5], 'attempt', attempts, 'gpu_seconds', gpu, 'meta', meta})
return {1, 'failed'}
