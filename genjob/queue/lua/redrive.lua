-- Send a dead-lettered job back to the tail of its line (pending list or priority band) with its attempts reset.
-- KEYS: 1 job hash, 2 dead list, 3 pending list, 4 queued-at zset, 5 wake list, 6 events stream
-- ARGV: 1 job id, 2 events maxlen
-- Returns {1, 'queued'} or {0, 'not_dead_lettered'}.
if redis.call('LREM', KEYS[2], 0, ARGV[1]) == 0 or redis.call('HGET', KEYS[1], 'state') ~= 'failed' then
  return {0, 'not_dead_lettered'}
end
local now = now_ms()
redis.call('PERSIST', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'queued', 'attempts', 0, 'reason', 'Redriven', 'message', '',
  'enqueued_at', now, 'cancel_requested', 0)
redis.call('HDEL', KEYS[1], 'finished_at', 'result')
enter_line(KEYS[3], KEYS[1], ARGV[1], false)
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('RPUSH', KEYS[5], '1')
local f = redis.call('HMGET', KEYS[1], 'tier', 'meta')
emit(KEYS[6], ARGV[2], 'queued', ARGV[1], f[1], now, {'reason', 'Redriven', 'meta', f[2] or ''})
return {1, 'queued'}
