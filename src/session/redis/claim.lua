-- Take the claim to assemble the object. KEYS: upload, parts. ARGV: now, lease, margin.
-- Claimable: every chunk in (an append upload: its offset at its length), no live claim, and `completing` (even past expiry: its bytes
-- are all there) or `uploading` and unexpired. The upload then does not expire before
-- the claim lapses. Returns {fence, claim_until}, or {} when not claimable.
local now = tonumber(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'state', 'expires', 'received', 'total', 'claim_until', 'append', 'offset',
  'length')
if not f[1] then return {} end
local expires = tonumber(f[2])
if f[1] ~= 'completing' and not (f[1] == 'uploading' and expires > now) then return {} end
local all_in = tonumber(f[3]) == tonumber(f[4])
if f[6] == '1' then all_in = f[8] ~= '' and tonumber(f[8]) == tonumber(f[7]) end
if not all_in or tonumber(f[5]) > now then return {} end
local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
local claim_until = now + tonumber(ARGV[2])
expires = math.max(expires, claim_until)
redis.call('HSET', KEYS[1], 'state', 'completing', 'claim_fence', fence, 'claim_until', claim_until,
  'updated', now, 'expires', expires)
redis.call('PEXPIREAT', KEYS[1], expires + tonumber(ARGV[3]))
redis.call('PEXPIREAT', KEYS[2], expires + tonumber(ARGV[3]))
return {fence, claim_until}
