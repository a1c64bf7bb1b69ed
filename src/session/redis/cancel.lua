-- Cancel an upload. KEYS: upload, parts, outbox. ARGV: now, ttl, margin.
-- Returns {'canceled', fields before the change...}, {'refused', state} or {'missing'}.
-- `emit` (emit.lua) is prepended when the script is loaded.

local now = tonumber(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'state', 'expires', 'claim_until')
if not f[1] or tonumber(f[2]) <= now then return {'missing'} end
local state = f[1]
if state == 'completed' or state == 'canceled' then return {'refused', state} end
if state == 'completing' and tonumber(f[3]) > now then return {'refused', state} end
local before = redis.call('HGETALL', KEYS[1])
local expires = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'canceled', 'claim_fence', 0, 'claim_until', 0, 'updated', now, 'expires', expires)
redis.call('DEL', KEYS[2])
emit('upload.canceled', now)
redis.call('PEXPIREAT', KEYS[1], expires + tonumber(ARGV[3]))
table.insert(before, 1, 'canceled')
return before
