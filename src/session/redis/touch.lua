-- Extend a live upload. KEYS: upload, parts. ARGV: now, ttl, margin.
-- Returns the record's fields after the change, or {} when there is no live upload.
local now = tonumber(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'state', 'expires')
if not f[1] or tonumber(f[2]) <= now or f[1] == 'canceled' then return {} end
local expires = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'expires', expires)
redis.call('PEXPIREAT', KEYS[1], expires + tonumber(ARGV[3]))
redis.call('PEXPIREAT', KEYS[2], expires + tonumber(ARGV[3]))
return redis.call('HGETALL', KEYS[1])
