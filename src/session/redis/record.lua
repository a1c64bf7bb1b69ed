-- Record one stored chunk. KEYS: upload, parts, outbox. ARGV: index, receipt, size, now,
-- ttl, lease, margin, progress ('1': a progress event may be due). Returns {'ok',
-- received, bytes, fence, claim_until, replaced receipt or ''} (fence 0: no claim),
-- {'refused', state} or {'missing'}.
-- `emit` (emit.lua) is prepended when the script is loaded.

local now = tonumber(ARGV[4])
local f = redis.call('HMGET', KEYS[1], 'state', 'expires', 'total', 'direct')
if not f[1] or tonumber(f[2]) <= now then return {'missing'} end
if f[1] ~= 'uploading' then return {'refused', f[1]} end
local previous = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local received, bytes
if not previous then
  received = redis.call('HINCRBY', KEYS[1], 'received', 1)
  bytes = redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[3])
else
  local c = redis.call('HMGET', KEYS[1], 'received', 'bytes')
  received, bytes = tonumber(c[1]), tonumber(c[2])
end
local expires = now + tonumber(ARGV[5])
local fence, claim_until = 0, 0
-- A direct upload (field `direct`) is completed by its client's confirmation only.
if not previous and received == tonumber(f[3]) and not f[4] then
  fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
  claim_until = now + tonumber(ARGV[6])
  expires = math.max(expires, claim_until)
  redis.call('HSET', KEYS[1], 'state', 'completing', 'claim_fence', fence, 'claim_until', claim_until)
end
redis.call('HSET', KEYS[1], 'updated', now, 'expires', expires)
if ARGV[8] == '1' then
  local last = redis.call('HGET', KEYS[1], 'progress_at')
  if not last or now - tonumber(last) >= 1000 then emit('upload.progress', now) end
end
redis.call('PEXPIREAT', KEYS[1], expires + tonumber(ARGV[7]))
redis.call('PEXPIREAT', KEYS[2], expires + tonumber(ARGV[7]))
return {'ok', received, bytes, fence, claim_until, previous or ''}
