-- Active workers (prelude: active_workers) of each workers zset, on Redis's clock.
-- KEYS: workers zsets (the all-tiers one or per-tier ones)
-- ARGV: 1 worker window ms
-- Returns one count per key.
local now, counts = now_ms(), {}
for i = 1, #KEYS do counts[i] = active_workers(KEYS[i], now, ARGV[1]) end
return counts
