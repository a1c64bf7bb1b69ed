-- Take the right to append to an append upload at an offset. KEYS: upload, parts.
-- ARGV: offset, now, ttl, lease, margin.
-- Returns {'granted', fence, claim_until, fields after the change...}, {'offset', expected},
-- {'busy'}, {'refused', state} or {'missing'}.
local now = tonumber(ARGV[2])
local f = redis.call('HMGET', KEYS[1], 'state', 'expires', 'append', 'offset', 'claim_until')
if not f[1] or tonumber(f[2]) <= now then return {'missing'} end
if f[3] ~= '1' or f[1] ~= 'uploading' then return {'refused', f[1]} end
if tonumber(f[5]) > now then return {'busy'} end
if tonumber(f[4]) ~= tonumber(ARGV[1]) then return {'offset', f[4]} end
local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
local claim_until = now + tonumber(ARGV[4])
local expires = math.max(now + tonumber(ARGV[3]), claim_until)
redis.call('HSET', KEYS[1], 'claim_fence', fence, 'claim_until', claim_until, 'updated', now, 'expires', expires)
redis.call('PEXPIREAT', KEYS[1], expires + tonumber(ARGV[5]))
redis.call('PEXPIREAT', KEYS[2], expires + tonumber(ARGV[5]))
local reply = {'granted', fence, claim_until}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do table.insert(reply, v) end
return reply
