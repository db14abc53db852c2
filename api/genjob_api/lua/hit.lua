-- Count one request of an API key (every route but local mode's submit, which counts in submit.lua).
-- KEYS: 1 the key's counter of the current window
-- ARGV: 1 counter TTL seconds
-- Returns the window's count so far.
return count_request(KEYS[1], ARGV[1])
