-- Acknowledge packets by name. KEYS: processing, attempts, parked (packets set aside).
-- ARGV: the packets. One not in the processing list is looked for among those set aside.
for i = 1, #ARGV do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 0 then redis.call('LREM', KEYS[3], 1, ARGV[i]) end
end
if redis.call('HLEN', KEYS[2]) > 0 then
  for i = 1, #ARGV do redis.call('HDEL', KEYS[2], redis.sha1hex(ARGV[i])) end
end
return #ARGV
