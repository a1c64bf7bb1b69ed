-- Create an upload. KEYS: upload. ARGV: expires_at + margin, then field/value pairs.
-- Returns 1, or 0 when the id is taken.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[1]))
return 1
