-- Delete a final, expired upload. KEYS: upload, parts. ARGV: now.
-- Returns {'removed', fields...}, {'kept'} (not expired, or not final) or {'missing'}.
local now = tonumber(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'state', 'expires')
if not f[1] then return {'missing'} end
local final = f[1] == 'completed' or f[1] == 'failed' or f[1] == 'canceled' or f[1] == 'expired'
if tonumber(f[2]) > now or not final then return {'kept'} end
local before = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
table.insert(before, 1, 'removed')
return before
