-- Hand an instance's processing list, and the packets it set aside, back to the input,
-- oldest packets rightmost (next to be consumed; those set aside are older than any claim).
-- KEYS: lease, processing, input, attempts, instances, parked.
-- ARGV: instance id, force ('0': only when its lease lapsed), count attempt ('1').
-- Returns -1 when the lease still holds, else the number of packets moved.
if ARGV[2] == '0' and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local moved = 0
for _, list in ipairs({KEYS[2], KEYS[6]}) do
  local items = redis.call('LRANGE', list, 0, -1)
  for i = 1, #items do
    redis.call('RPUSH', KEYS[3], items[i])
    if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[4], redis.sha1hex(items[i]), 1) end
  end
  redis.call('DEL', list)
  moved = moved + #items
end
if ARGV[2] == '0' then redis.call('SREM', KEYS[5], ARGV[1]) end
return moved
