-- Hand claimed packets back to the front of the input, in their original order.
-- KEYS: processing, input. ARGV: packets in claim order.
for i = #ARGV, 1, -1 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) > 0 then redis.call('RPUSH', KEYS[2], ARGV[i]) end
end
return #ARGV
