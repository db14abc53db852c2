-- Shared by every genjob script (prepended at load time).
-- Times are Redis server milliseconds, so every client shares one clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Append one event to the stream. `fields` is a flat list of extra name/value pairs.
local function emit(stream, maxlen, kind, job_id, tier, ts, fields)
  local args = {stream, 'MAXLEN', '~', maxlen, '*', 'type', kind, 'job', job_id, 'tier', tier, 'ts', ts}
  for i = 1, #fields do args[#args + 1] = fields[i] end
  redis.call('XADD', unpack(args))
end

-- Put a job id back on its pending list so it is claimed next, and wake one idle worker.
local function push_head(pending, queued_at, wake, job_key, job_id)
  redis.call('LPUSH', pending, job_id)
  redis.call('ZADD', queued_at, redis.call('HGET', job_key, 'enqueued_at'), job_id)
  redis.call('RPUSH', wake, '1')
  redis.call('LTRIM', wake, -1000, -1)
end
