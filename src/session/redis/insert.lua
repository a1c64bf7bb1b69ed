-- Create an upload and record its events. KEYS: upload, parts, outbox. ARGV: expires_at
-- + margin, created (ms), then field/value pairs. Returns 1, or 0 when the id is taken.
-- `emit` (emit.lua) is prepended when the script is loaded.

if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[1]))
local created = tonumber(ARGV[2])
emit('upload.created', created)
if redis.call('HGET', KEYS[1], 'state') == 'completed' then emit('upload.completed', created) end
return 1
