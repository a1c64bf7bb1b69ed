-- Move an upload's entry in the due index, if nobody moved it meanwhile (a claim may
-- have lowered it: then it stays). KEYS: index. ARGV: id, from, to ('' drops the entry).
-- Returns 1 when moved, 0 when left alone.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
