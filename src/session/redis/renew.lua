-- Extend a live claim: the heartbeat of a running completion or of an append in
-- flight. KEYS: upload, parts.
-- ARGV: fence, now, lease, margin. Returns 1, or 0 when that claim is not live.
local now = tonumber(ARGV[2])
local f = redis.call('HMGET', KEYS[1], 'state', 'claim_fence', 'claim_until', 'expires')
if (f[1] ~= 'completing' and f[1] ~= 'uploading') or tonumber(f[2]) ~= tonumber(ARGV[1]) then return 0 end
if tonumber(f[3]) <= now or tonumber(f[4]) <= now then return 0 end
local claim_until = now + tonumber(ARGV[3])
local expires = math.max(tonumber(f[4]), claim_until)
redis.call('HSET', KEYS[1], 'claim_until', claim_until, 'expires', expires)
redis.call('PEXPIREAT', KEYS[1], expires + tonumber(ARGV[4]))
redis.call('PEXPIREAT', KEYS[2], expires + tonumber(ARGV[4]))
return 1
