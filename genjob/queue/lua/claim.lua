-- Claim up to N jobs from an ordered list of tiers; each claim leaves a lease.
-- KEYS: 1 events stream, 2 workers zset, then per tier (in claim order) 6 keys:
--       pending list, in-flight zset, queued-at zset, delayed zset, wake list, tier's workers zset
-- ARGV: 1 job key prefix, 2 worker id, 3 lease ms, 4 max jobs, 5 events maxlen,
--       6 the worker's start-up JSON when this is its first claim (cold), else ''
--       (kept in the record's cold_start, sent as `cold` on the running event; every running
--       event carries wait_ms = claim time - enqueue time)
-- Returns a flat list, 9 fields per claimed job:
--   id, tier, lease token, spec JSON, attempts, max attempts, enqueued_at ms, meta JSON,
--   checkpoint reference ('' when the job has none: it starts from step 0)
-- With N > 1, jobs after the first are taken only while they share its batch key and tier.
local prefix, worker, lease_ms, max_jobs, maxlen = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local cold = ARGV[6] or ''
local now = now_ms()
local out = {}
local claimed, batch_key = 0, nil
local ntiers = (#KEYS - 2) / 6
redis.call('ZADD', KEYS[2], now, worker)
for t = 1, ntiers do redis.call('ZADD', KEYS[2 + t * 6], now, worker) end

for t = 1, ntiers do
  local b = 2 + (t - 1) * 6
  local pending, inflight, queued_at, delayed, wake = KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 4], KEYS[b + 5]
  -- Retries whose backoff has passed become claimable first.
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(due) do
    redis.call('ZREM', delayed, id)
    redis.call('HSET', prefix .. id, 'state', 'queued')
    push_head(pending, queued_at, wake, prefix .. id, id)
  end
  local ranked = by_priority(pending)
  while claimed < max_jobs do
    -- Priority jobs first (the lowest score is the highest priority), then the list's head.
    local id, ranked_first = redis.call('ZRANGE', ranked, 0, 0)[1], true
    if not id then id, ranked_first = redis.call('LINDEX', pending, 0), false end
    if not id then break end
    local function leave_line()
      if ranked_first then redis.call('ZREM', ranked, id) else redis.call('LPOP', pending) end
    end
    local key = prefix .. id
    local fields = redis.call('HMGET', key, 'state', 'batch_key', 'tier', 'spec', 'attempts', 'max_attempts', 'enqueued_at', 'meta', 'checkpoint')
    if fields[1] ~= 'queued' then
      -- A stale id (its record expired or changed state): drop it and look again.
      leave_line()
      redis.call('ZREM', queued_at, id)
    else
      if claimed > 0 and fields[2] ~= batch_key then break end
      leave_line()
      batch_key = fields[2]
      local lease = tostring(redis.call('HINCRBY', key, 'claims', 1))
      redis.call('HSET', key, 'state', 'running', 'worker', worker, 'lease', lease, 'started_at', now,
        'cancel_requested', 0, 'cold_start', cold)
      redis.call('ZADD', inflight, now + lease_ms, id)
      redis.call('ZREM', queued_at, id)
      local extra = {'worker', worker, 'attempt', tonumber(fields[5]) + 1, 'meta', fields[8] or '',
        'wait_ms', now - tonumber(fields[7])}
      if cold ~= '' then extra[#extra + 1] = 'cold'; extra[#extra + 1] = cold end
      emit(KEYS[1], maxlen, 'running', id, fields[3], now, extra)
      local n = #out
      out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, fields[3], lease, fields[4]
      out[n + 5], out[n + 6], out[n + 7], out[n + 8] = fields[5], fields[6], fields[7], fields[8] or ''
      out[n + 9] = fields[9] or ''
      claimed = claimed + 1
    end
  end
  if redis.call('LLEN', pending) == 0 and redis.call('ZCARD', ranked) == 0 then redis.call('DEL', wake) end
  if claimed > 0 then break end
end
return out
