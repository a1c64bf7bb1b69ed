-- Delete an expired upload. KEYS: upload, parts. ARGV: now.
-- Returns {'removed', fields...}, {'kept'} (not expired, or under a live claim) or
-- {'missing'}.
local now = tonumber(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'state', 'expires', 'claim_until')
if not f[1] then return {'missing'} end
if tonumber(f[2]) > now or tonumber(f[3]) > now then return {'kept'} end
local before = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
table.insert(before, 1, 'removed')
return before
