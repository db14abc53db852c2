-- Count the unfinished jobs of index sets (JobQueue.enqueue's `index`), forgetting the ids whose
-- record is final or gone. O(members): an index holds one tenant's admitted jobs of one tier.
-- KEYS: the index sets. ARGV: 1 job key prefix.
-- Returns one count per key.
local counts = {}
for i, index in ipairs(KEYS) do
  for _, id in ipairs(redis.call('SMEMBERS', index)) do
    local state = redis.call('HGET', ARGV[1] .. id, 'state')
    if not state or FINAL[state] then redis.call('SREM', index, id) end
  end
  counts[i] = redis.call('SCARD', index)
end
return counts
