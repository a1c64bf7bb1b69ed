-- Create an upload and record its events. KEYS: upload, parts, outbox. ARGV: expires_at
-- + margin, created (ms), then field/value pairs. Returns 1, or 0 when the id is taken.

-- Records event `kind` at `now` in the upload's outbox (KEYS[3]), numbered, with the
-- record as it is now.
local function emit(kind, now)
  local n = redis.call('HINCRBY', KEYS[1], 'events', 1)
  if kind == 'upload.progress' then redis.call('HSET', KEYS[1], 'progress_at', now) end
  local record = redis.call('HGETALL', KEYS[1])
  redis.call('RPUSH', KEYS[3], cjson.encode({n = n, type = kind, time = now, record = record}))
end

if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[1]))
local created = tonumber(ARGV[2])
emit('upload.created', created)
if redis.call('HGET', KEYS[1], 'state') == 'completed' then emit('upload.completed', created) end
return 1
