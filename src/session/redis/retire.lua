-- The sweeper's first step for an upload it found due. KEYS: upload, parts, outbox.
-- ARGV: now.
-- Returns {'retired', fields...} (a final, expired record; an expired `uploading` one has
-- just become `expired` under a new fence, its receipts dropped: the fields are those
-- before the change, for cleaning), {'due', at} (look again then), {'unfinished'} (left
-- `completing` by a claimer that is gone) or {'missing'}.
-- `emit` (emit.lua) is prepended when the script is loaded.

local now = tonumber(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'state', 'expires', 'claim_until')
if not f[1] then return {'missing'} end
local state, expires, claim_until = f[1], tonumber(f[2]), tonumber(f[3])
if claim_until > now then return {'due', math.min(claim_until, expires)} end
if state == 'completing' then return {'unfinished'} end
if expires > now then return {'due', expires} end
local before = redis.call('HGETALL', KEYS[1])
if state == 'uploading' then
  redis.call('HINCRBY', KEYS[1], 'fence', 1)
  redis.call('HSET', KEYS[1], 'state', 'expired', 'claim_fence', 0, 'claim_until', 0, 'updated', now)
  redis.call('DEL', KEYS[2])
  emit('upload.expired', now)
end
table.insert(before, 1, 'retired')
return before
