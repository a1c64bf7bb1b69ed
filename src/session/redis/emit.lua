-- Prepended to every script that records events (see `Scripts` in mod.rs). KEYS[1] is
-- the upload's hash, KEYS[3] its outbox list.

-- Records event `kind` at `now` in the upload's outbox (KEYS[3]), numbered, with the
-- record as it is now.
local function emit(kind, now)
  local n = redis.call('HINCRBY', KEYS[1], 'events', 1)
  if kind == 'upload.progress' then redis.call('HSET', KEYS[1], 'progress_at', now) end
  local record = redis.call('HGETALL', KEYS[1])
  redis.call('RPUSH', KEYS[3], cjson.encode({n = n, type = kind, time = now, record = record}))
end

