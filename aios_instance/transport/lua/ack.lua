-- Acknowledge packets by name. KEYS: processing, attempts. ARGV: the packets.
for i = 1, #ARGV do redis.call('LREM', KEYS[1], 1, ARGV[i]) end
if redis.call('HLEN', KEYS[2]) > 0 then
  for i = 1, #ARGV do redis.call('HDEL', KEYS[2], redis.sha1hex(ARGV[i])) end
end
return #ARGV
