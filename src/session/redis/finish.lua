-- End a claim. KEYS: upload, parts, outbox. ARGV: fence, outcome (completed | failed | release |
-- reopen), text (etag or error), now, ttl, margin, the object's CRC-64/NVME (completed; may be
-- empty), then the chunks to forget (reopen).
-- Returns 1, or 0 unless that claim is live on an unexpired record.
-- `emit` (emit.lua) is prepended when the script is loaded.

local now = tonumber(ARGV[4])
local f = redis.call('HMGET', KEYS[1], 'state', 'claim_fence', 'claim_until', 'expires')
if f[1] ~= 'completing' or tonumber(f[2]) ~= tonumber(ARGV[1]) then return 0 end
if tonumber(f[3]) <= now or tonumber(f[4]) <= now then return 0 end
local expires = now + tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'claim_fence', 0, 'claim_until', 0, 'updated', now)
local outcome = ARGV[2]
if outcome == 'completed' then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'etag', ARGV[3], 'expires', expires)
  if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'crc64', ARGV[7]) end
  redis.call('DEL', KEYS[2])
  emit('upload.completed', now)
elseif outcome == 'failed' then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'error', ARGV[3], 'expires', expires)
  redis.call('DEL', KEYS[2])
  emit('upload.failed', now)
elseif outcome == 'reopen' then
  redis.call('HSET', KEYS[1], 'state', 'uploading', 'expires', expires)
  for i = 8, #ARGV do
    local receipt = redis.call('HGET', KEYS[2], ARGV[i])
    if receipt then
      redis.call('HDEL', KEYS[2], ARGV[i])
      redis.call('HINCRBY', KEYS[1], 'received', -1)
      redis.call('HINCRBY', KEYS[1], 'bytes', -cjson.decode(receipt).size)
    end
  end
end
if outcome ~= 'release' then
  redis.call('PEXPIREAT', KEYS[1], expires + tonumber(ARGV[6]))
  redis.call('PEXPIREAT', KEYS[2], expires + tonumber(ARGV[6]))
end
return 1
