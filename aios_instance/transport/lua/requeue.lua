-- Hand an instance's processing list back to the input, oldest packets rightmost (next to
-- be consumed). KEYS: lease, processing, input, attempts, instances.
-- ARGV: instance id, force ('0': only when its lease lapsed), count attempt ('1').
-- Returns -1 when the lease still holds, else the number of packets moved.
if ARGV[2] == '0' and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local items = redis.call('LRANGE', KEYS[2], 0, -1)
for i = 1, #items do
  redis.call('RPUSH', KEYS[3], items[i])
  if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[4], redis.sha1hex(items[i]), 1) end
end
redis.call('DEL', KEYS[2])
if ARGV[2] == '0' then redis.call('SREM', KEYS[5], ARGV[1]) end
return #items
