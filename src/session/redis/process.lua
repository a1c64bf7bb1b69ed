-- Move an upload's processing stage, if it is still what the caller read. KEYS: upload,
-- parts, outbox. ARGV: now, the stage read (JSON), the new stage (JSON), the event, expires,
-- margin. Returns {'ok', fields after the change...}, {'changed'} when the record moved on
-- since it was read (the caller reads again), or {'missing'}.
-- `emit` (emit.lua) is prepended when the script is loaded.

local now = tonumber(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'state', 'expires', 'processing')
if not f[1] or tonumber(f[2]) <= now then return {'missing'} end
if f[1] ~= 'completed' or f[3] ~= ARGV[2] then return {'changed'} end
local expires = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'processing', ARGV[3], 'updated', now, 'expires', expires)
emit(ARGV[4], now)
redis.call('PEXPIREAT', KEYS[1], expires + tonumber(ARGV[6]))
local fields = redis.call('HGETALL', KEYS[1])
table.insert(fields, 1, 'ok')
return fields
