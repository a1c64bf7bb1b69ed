-- After a publish, on the outbox index. KEYS: the outbox index. ARGV: upload id, the
-- publisher's until, events left ('0' or '1'), now. An entry still at `until` goes (no
-- events left) or comes due at once (some left); an entry a new event moved stays.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '0' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], 'XX', ARGV[4], ARGV[1])
end
return 1
