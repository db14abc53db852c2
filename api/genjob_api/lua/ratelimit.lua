-- The gateway's per-API-key request counter, a fixed window (genjob_api/ratelimit.py):
-- count one request on the window's key, which expires `ttl` seconds after its first request.
-- Returns the window's count so far. Loaded before every gateway script.
local function count_request(counter_key, ttl)
  local count = redis.call('INCR', counter_key)
  if count == 1 then redis.call('EXPIRE', counter_key, ttl) end
  return count
end
