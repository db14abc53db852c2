-- Shared by every genjob script (prepended at load time).
-- Times are Redis server milliseconds, so every client shares one clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local FINAL = {succeeded = true, failed = true, cancelled = true}

-- Workers of a workers zset seen (claim or heartbeat, scored with now_ms) within the window:
-- the one definition of an active worker (JobQueue.active_workers, stats, place_in_line, submit).
local function active_workers(workers_key, now, window_ms)
  return redis.call('ZCOUNT', workers_key, now - tonumber(window_ms), '+inf')
end

-- Append one event to the stream. `fields` is a flat list of extra name/value pairs.
-- A final event also goes to `<stream>:final` (RedisKeys.final_events), which webhook
-- delivery reads instead of every progress report.
local function emit(stream, maxlen, kind, job_id, tier, ts, fields)
  local args = {stream, 'MAXLEN', '~', maxlen, '*', 'type', kind, 'job', job_id, 'tier', tier, 'ts', ts}
  for i = 1, #fields do args[#args + 1] = fields[i] end
  redis.call('XADD', unpack(args))
  if FINAL[kind] then
    args[1] = stream .. ':final'
    redis.call('XADD', unpack(args))
  end
end

-- Jobs with priority > 0 wait in a sorted set beside the tier's pending list
-- (RedisKeys.pending_by_priority: the list's name + ':by-priority'), scored by band
-- (10 - priority) * 2^40, plus a per-tier sequence at the tail of the band or minus it at
-- the head: an insert is O(log n) whatever the backlog. Claims take from it before the list.
local PRIORITY_BAND = 1099511627776

local function by_priority(pending)
  return pending .. ':by-priority'
end

-- Put a queued job in line: priority 0 on the pending list, a priority job in its band.
local function enter_line(pending, job_key, job_id, at_head)
  local priority = tonumber(redis.call('HGET', job_key, 'priority') or '0')
  if priority > 0 then
    local ranked = by_priority(pending)
    local seq = redis.call('INCR', ranked .. ':seq')
    redis.call('ZADD', ranked, (10 - priority) * PRIORITY_BAND + (at_head and -seq or seq), job_id)
  elseif at_head then
    redis.call('LPUSH', pending, job_id)
  else
    redis.call('RPUSH', pending, job_id)
  end
end

-- Put a job id back at the head of its line so it is claimed next, and wake one idle worker.
local function push_head(pending, queued_at, wake, job_key, job_id)
  enter_line(pending, job_key, job_id, true)
  redis.call('ZADD', queued_at, redis.call('HGET', job_key, 'enqueued_at'), job_id)
  redis.call('RPUSH', wake, '1')
  redis.call('LTRIM', wake, -1000, -1)
end

-- A finished record keeps what status and results need: an inline init image (a data URI of
-- up to 1 MiB) is replaced by a short note once the job succeeded or was cancelled (a failed
-- job keeps it: it may be redriven). The spec JSON is compact (no spaces), see core._json.
local function drop_inline_image(job_key)
  local spec = redis.call('HGET', job_key, 'spec')
  if spec and string.find(spec, '"initImage":"data:', 1, true) then
    spec = string.gsub(spec, '"initImage":"data:[^"]*"', '"initImage":"data:,removed-when-finished"')
    redis.call('HSET', job_key, 'spec', spec)
  end
end

-- Finish a job as cancelled: the record keeps its retention, the final event is emitted.
-- Used by cancel and by every path that would send a job with a cancel request back to
-- the queue (requeue, reap, retry): a cancel always wins over running again.
local function cancel_job(job_key, events, maxlen, id, tier, meta, message, retention, now)
  redis.call('HSET', job_key, 'state', 'cancelled', 'reason', 'Cancelled', 'message', message, 'finished_at', now)
  drop_inline_image(job_key)
  redis.call('EXPIRE', job_key, retention)
  emit(events, maxlen, 'cancelled', id, tier, now, {'reason', 'Cancelled', 'meta', meta or ''})
end

-- A job that ends for good away from its worker (cancelled while waiting, cancelled or
-- dead-lettered by the reaper) may leave a denoising checkpoint in the result store, which
-- only workers can write to: its id goes to the orphaned-checkpoints set (RedisKeys.
-- orphaned_checkpoints) for them to delete it, and the record drops the reference.
local function orphan_checkpoint(job_key, orphans, id)
  local checkpoint = redis.call('HGET', job_key, 'checkpoint')
  if checkpoint and checkpoint ~= '' then
    redis.call('SADD', orphans, id)
    redis.call('HDEL', job_key, 'checkpoint', 'checkpoint_step')
  end
end

-- Create a job and queue it, unless its id exists (then change nothing).
-- Returns {1, 'queued', now} or {0, <current state>, now}. Used by enqueue and submit.
local function enqueue_job(job_key, pending, queued_at, wake, events, id, tier, spec, priority,
                           max_attempts, batch_key, meta, job_prefix, maxlen)
  local now = now_ms()
  if redis.call('EXISTS', job_key) == 1 then
    return {0, redis.call('HGET', job_key, 'state'), now}
  end
  redis.call('HSET', job_key, 'id', id, 'tier', tier, 'state', 'queued', 'spec', spec,
    'priority', priority, 'attempts', 0, 'max_attempts', max_attempts, 'claims', 0,
    'batch_key', batch_key, 'meta', meta, 'enqueued_at', now, 'cancel_requested', 0)

  enter_line(pending, job_key, id, false)
  redis.call('ZADD', queued_at, now, id)
  redis.call('RPUSH', wake, '1')
  redis.call('LTRIM', wake, -1000, -1)
  emit(events, maxlen, 'queued', id, tier, now, {'meta', meta})
  return {1, 'queued', now}
end
