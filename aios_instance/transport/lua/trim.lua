-- Acknowledge a whole claim by position (no need to send it back), after checking that it
-- is where it should be: at the head if it is the latest claim, at the tail if the oldest.
-- KEYS: processing. ARGV: side ('head' | 'tail'), count, first, last packet of the claim.
-- The claim LPUSHed its first packet first, so at the head the last one is at index 0.
-- Returns 0 when the list is not as expected (requeued meanwhile): the caller then names
-- the packets.
local n = tonumber(ARGV[2])
local function at(i) return redis.call('LINDEX', KEYS[1], i) end
if ARGV[1] == 'tail' then
  if at(-1) == ARGV[3] and at(-n) == ARGV[4] then
    redis.call('LTRIM', KEYS[1], 0, -n - 1)
    return 1
  end
elseif at(0) == ARGV[4] and at(n - 1) == ARGV[3] then
  redis.call('LTRIM', KEYS[1], n, -1)
  return 1
end
return 0
