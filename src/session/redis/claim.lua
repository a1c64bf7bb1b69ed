-- Take the claim to assemble the object. KEYS: upload. ARGV: now, lease.
-- Returns {fence, claim_until}, or {} when not claimable.
local now = tonumber(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'state', 'expires', 'received', 'total', 'claim_until')
if not f[1] or tonumber(f[2]) <= now then return {} end
if f[1] ~= 'uploading' and f[1] ~= 'completing' then return {} end
if tonumber(f[3]) ~= tonumber(f[4]) or tonumber(f[5]) > now then return {} end
local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
local claim_until = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'completing', 'claim_fence', fence, 'claim_until', claim_until, 'updated', now)
return {fence, claim_until}
