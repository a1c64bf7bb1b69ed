-- Hold an upload's outbox for a publisher. KEYS: the outbox index. ARGV: upload id, the
-- score the publisher read, until (ms). Returns 1 if the entry still had that score (it
-- now has `until`), else 0 (another publisher took it, or a new event moved it).
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
return 1
