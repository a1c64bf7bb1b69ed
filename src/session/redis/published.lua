-- Forget published events. KEYS: the upload's outbox. ARGV: the number of the last
-- published event. Events recorded since stay. Returns how many are left.
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head or cjson.decode(head).n > tonumber(ARGV[1]) then break end
  redis.call('LPOP', KEYS[1])
end
return redis.call('LLEN', KEYS[1])
