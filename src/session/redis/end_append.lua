-- Record what an append stored and end its claim. KEYS: upload, parts, outbox.
-- ARGV: fence, now, ttl, lease, margin, offset, cursor, length ('' when not declared),
-- progress ('1': a progress event may be due), the CRC-64/NVME of the bytes before the
-- offset ('' when unknown), then index/receipt pairs of the parts it finished.
-- Returns {'ok', offset, length or '', fence, claim_until} (fence 0: no completion claim)
-- or {'lost'} when the writer's claim is not live.
-- `emit` (emit.lua) is prepended when the script is loaded.

local now = tonumber(ARGV[2])
local f = redis.call('HMGET', KEYS[1], 'state', 'claim_fence', 'claim_until', 'expires', 'append', 'offset',
  'length', 'received')
if f[1] ~= 'uploading' or f[5] ~= '1' or tonumber(f[2]) ~= tonumber(ARGV[1]) then return {'lost'} end
if tonumber(f[3]) <= now or tonumber(f[4]) <= now then return {'lost'} end
local offset = math.max(tonumber(f[6]), tonumber(ARGV[6]))
local length = f[7]
if ARGV[8] ~= '' then length = ARGV[8] end
local received = tonumber(f[8])
for i = 11, #ARGV, 2 do
  if redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then received = received + 1 end
end
local expires = now + tonumber(ARGV[3])
if tonumber(ARGV[6]) >= tonumber(f[6]) then
  if ARGV[10] == '' then redis.call('HDEL', KEYS[1], 'append_crc64')
  else redis.call('HSET', KEYS[1], 'append_crc64', ARGV[10]) end
end
redis.call('HSET', KEYS[1], 'offset', offset, 'cursor', ARGV[7], 'length', length, 'received', received,
  'bytes', offset, 'claim_fence', 0, 'claim_until', 0, 'updated', now)
local fence, claim_until = 0, 0
if length ~= '' and tonumber(length) == offset then
  fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
  claim_until = now + tonumber(ARGV[4])
  expires = math.max(expires, claim_until)
  redis.call('HSET', KEYS[1], 'state', 'completing', 'claim_fence', fence, 'claim_until', claim_until)
end
redis.call('HSET', KEYS[1], 'expires', expires)
if ARGV[9] == '1' then
  local last = redis.call('HGET', KEYS[1], 'progress_at')
  if not last or now - tonumber(last) >= 1000 then emit('upload.progress', now) end
end
redis.call('PEXPIREAT', KEYS[1], expires + tonumber(ARGV[5]))
redis.call('PEXPIREAT', KEYS[2], expires + tonumber(ARGV[5]))
return {'ok', offset, length, fence, claim_until}
